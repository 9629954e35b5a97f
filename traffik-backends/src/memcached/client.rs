//! A minimal memcached meta-protocol connection: the five commands traffik
//! needs (`mg`, `ms`, `ma`, `md`), pipelined when asked.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::{TcpStream, UnixStream};

/// A transport memcached speaks over.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Address {
    Tcp(String),
    Unix(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(host) => write!(f, "{host}"),
            Address::Unix(path) => write!(f, "unix:{path}"),
        }
    }
}

/// One reply to a meta command.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// `VA`: a value, with the CAS token when asked for.
    Value { data: Vec<u8>, cas: Option<u64> },
    /// `HD`: done.
    Done,
    /// `EN` / `NF`: no such item.
    Missing,
    /// `NS` / `EX`: not stored, or the CAS token no longer matches.
    Conflict,
}

pub(super) struct Connection {
    stream: BufStream<Box<dyn Io>>,
    line: String,
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Connection {
    pub(super) async fn open(address: &Address) -> io::Result<Connection> {
        let io: Box<dyn Io> = match address {
            Address::Tcp(host) => {
                let stream = TcpStream::connect(host.as_str()).await?;
                stream.set_nodelay(true)?;
                Box::new(stream)
            }
            Address::Unix(path) => Box::new(UnixStream::connect(path).await?),
        };
        Ok(Connection {
            stream: BufStream::new(io),
            line: String::with_capacity(128),
        })
    }

    /// Sends `commands` (each a full command line, and for `ms` its data
    /// line) in one write, and reads one reply per command: one round trip.
    pub(super) async fn round_trip(
        &mut self,
        commands: &[u8],
        replies: usize,
    ) -> io::Result<Vec<Reply>> {
        self.stream.write_all(commands).await?;
        self.stream.flush().await?;
        let mut out = Vec::with_capacity(replies);
        for _ in 0..replies {
            out.push(self.read_reply().await?);
        }
        Ok(out)
    }

    async fn read_reply(&mut self) -> io::Result<Reply> {
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "memcached closed the connection",
            ));
        }
        let line = self.line.trim_end();
        let mut words = line.split(' ');
        match words.next() {
            Some("VA") => {
                let size: usize = words
                    .next()
                    .and_then(|size| size.parse().ok())
                    .ok_or_else(|| protocol(format!("bad value header {line:?}")))?;
                let cas = words
                    .find_map(|flag| flag.strip_prefix('c'))
                    .and_then(|cas| cas.parse().ok());
                let mut data = vec![0; size + 2];
                self.stream.read_exact(&mut data).await?;
                data.truncate(size);
                Ok(Reply::Value { data, cas })
            }
            Some("HD") => Ok(Reply::Done),
            Some("EN" | "NF") => Ok(Reply::Missing),
            Some("NS" | "EX") => Ok(Reply::Conflict),
            _ => Err(protocol(format!("unexpected reply {line:?}"))),
        }
    }
}

/// Builders for the command lines.
pub(super) mod command {
    use std::io::Write;

    /// `mg <key> v [c]`: the value (and its CAS token).
    pub(crate) fn get(out: &mut Vec<u8>, key: &str, with_cas: bool) {
        let _ = write!(out, "mg {key} v{}\r\n", if with_cas { " c" } else { "" });
    }

    /// `ma <key> N<ttl> J<delta> D<delta> v`: add `delta`, creating the
    /// counter at `delta` with `ttl` if missing; replies with the new value.
    pub(crate) fn incr(out: &mut Vec<u8>, key: &str, delta: u64, ttl: u64) {
        let _ = write!(out, "ma {key} N{ttl} J{delta} D{delta} v\r\n");
    }

    /// `ma <key> MD D<delta>`: subtract `delta` (never below zero).
    pub(crate) fn decr(out: &mut Vec<u8>, key: &str, delta: u64) {
        let _ = write!(out, "ma {key} MD D{delta}\r\n");
    }

    /// `ms <key> <size> T<ttl> C<cas>`: store if the item is unchanged; with
    /// no token, `ME` (add mode): store only if the item is missing.
    pub(crate) fn set(out: &mut Vec<u8>, key: &str, data: &[u8], ttl: u64, cas: Option<u64>) {
        let _ = match cas {
            Some(cas) => write!(out, "ms {key} {} T{ttl} C{cas}\r\n", data.len()),
            None => write!(out, "ms {key} {} T{ttl} ME\r\n", data.len()),
        };
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }

    /// `md <key> [C<cas>]`.
    pub(crate) fn delete(out: &mut Vec<u8>, key: &str, cas: Option<u64>) {
        let _ = match cas {
            Some(cas) => write!(out, "md {key} C{cas}\r\n"),
            None => write!(out, "md {key}\r\n"),
        };
    }
}
