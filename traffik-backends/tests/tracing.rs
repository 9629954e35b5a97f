//! The decision span, alone in its test binary: `tracing` decides whether
//! a callsite is wanted for every thread at once, so a test on another
//! thread, with no subscriber, can make this one's span unwanted.

use traffik_backends::memory::MemoryBackend;
use traffik_core::{FailurePolicy, FixedWindow, ManualClock, Throttle};

const START: u64 = 1_700_000_000_000;

/// Captures what a `tracing` subscriber writes, for the assertions.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn capture(level: tracing::Level) -> (Log, tracing::subscriber::DefaultGuard) {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(level)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (log, guard)
}

#[test]
fn a_decision_is_a_debug_span_without_the_identity() {
    let (log, _guard) = capture(tracing::Level::DEBUG);
    let backend = MemoryBackend::builder().sweep_interval(None).build();
    let clock = ManualClock::new(START);
    let login = Throttle::builder("login", "1/min".parse().unwrap())
        .strategy(FixedWindow)
        .failure_policy(FailurePolicy::Error)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap();
    login
        .hit("alice@example.com")
        .into_ready()
        .ok()
        .unwrap()
        .unwrap();
    login
        .hit("alice@example.com")
        .into_ready()
        .ok()
        .unwrap()
        .unwrap();
    let text = log.text();
    assert_eq!(text.matches("traffik.decide").count(), 2, "{text}");
    assert!(text.contains("throttle=\"login\""), "{text}");
    assert!(
        text.contains("outcome=\"allowed\"") && text.contains("outcome=\"denied\""),
        "{text}"
    );
    assert!(text.contains("latency_us="), "{text}");
    assert!(!text.contains("alice"), "the identity was logged: {text}");
}
