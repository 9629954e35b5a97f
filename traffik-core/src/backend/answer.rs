//! [`Answer`]: a result that is ready at once, or a future of it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

pin_project! {
    /// The one future type of a decision (and of an identity): ready at once
    /// when the answer is known without waiting (an in-memory backend, an
    /// extractor that reads a header), pending on `F` when it is not (a
    /// round trip to Redis).
    ///
    /// It is a [`Future`] like any other, so `.await` works on both. Callers
    /// that can use an answer without an async context take it with
    /// [`into_ready`](Answer::into_ready): the axum layer does, and so boxes
    /// nothing when every decision of a request is immediate.
    ///
    /// ```
    /// use std::future::Pending;
    /// use traffik_core::Answer;
    ///
    /// let now: Answer<Pending<u8>> = Answer::ready(7);
    /// assert_eq!(now.into_ready().ok(), Some(7));
    /// ```
    ///
    /// A `Pending` answer that is dropped before it is polled must not have
    /// acted: callers may build one, see that it is pending, drop it and ask
    /// again from an async context.
    #[project = AnswerProjection]
    // The fields are described with their variants (the macro takes no doc
    // comments on fields).
    #[allow(missing_docs)]
    #[must_use = "an answer does nothing unless awaited or taken with into_ready"]
    pub enum Answer<F: Future> {
        /// Known at once: `output`, until the first poll takes it.
        Ready {
            output: Option<F::Output>,
        },
        /// Known when `future` completes.
        Pending {
            #[pin]
            future: F,
        },
    }
}

impl<F: Future> Answer<F> {
    /// An answer known now.
    #[inline]
    pub fn ready(output: F::Output) -> Answer<F> {
        Answer::Ready {
            output: Some(output),
        }
    }

    /// An answer `future` will give.
    #[inline]
    pub fn pending(future: F) -> Answer<F> {
        Answer::Pending { future }
    }

    /// The output if it is known now; the answer itself otherwise (or if it
    /// was already taken by a poll).
    ///
    /// # Errors
    ///
    /// Gives the answer back when it is pending.
    #[inline]
    pub fn into_ready(self) -> Result<F::Output, Answer<F>> {
        match self {
            Answer::Ready {
                output: Some(output),
            } => Ok(output),
            other => Err(other),
        }
    }

    /// Whether the output is known now.
    pub fn is_ready(&self) -> bool {
        matches!(self, Answer::Ready { output: Some(_) })
    }

    /// Applies `map` to the output, now or when it comes.
    #[inline]
    pub fn map<T, M>(self, map: M) -> Answer<Map<F, M>>
    where
        M: FnOnce(F::Output) -> T,
    {
        match self {
            Answer::Ready { output } => Answer::Ready {
                output: output.map(map),
            },
            Answer::Pending { future } => Answer::Pending {
                future: Map {
                    future,
                    map: Some(map),
                },
            },
        }
    }
}

impl<T> Answer<std::future::Pending<T>> {
    /// An answer known now, of a type that is never pending: what an
    /// implementation that always knows at once returns.
    ///
    /// ```
    /// use traffik_core::Answer;
    ///
    /// assert!(Answer::now(3).is_ready());
    /// ```
    #[inline]
    pub fn now(output: T) -> Answer<std::future::Pending<T>> {
        Answer::ready(output)
    }
}

impl<F: Future> Future for Answer<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            AnswerProjection::Ready { output } => match output.take() {
                Some(output) => Poll::Ready(output),
                // Polled after completion: never completes again.
                None => Poll::Pending,
            },
            AnswerProjection::Pending { future } => future.poll(cx),
        }
    }
}

impl<F: Future> fmt::Debug for Answer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Answer::Ready { .. } => "Answer::Ready",
            Answer::Pending { .. } => "Answer::Pending",
        })
    }
}

pin_project! {
    /// [`Answer::map`]'s future.
    pub struct Map<F, M> {
        #[pin]
        future: F,
        map: Option<M>,
    }
}

impl<F: Future, T, M: FnOnce(F::Output) -> T> Future for Map<F, M> {
    type Output = T;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.project();
        match this.future.poll(cx) {
            Poll::Ready(output) => match this.map.take() {
                Some(map) => Poll::Ready(map(output)),
                None => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F, M> fmt::Debug for Map<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Map")
    }
}
