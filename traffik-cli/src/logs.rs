//! Access-log lines: nginx's and Apache's combined format, and JSON lines.
//!
//! Combined (nginx's default `combined`, Apache's `%h %l %u %t \"%r\" %>s %b
//! \"%{Referer}i\" \"%{User-agent}i\"`; the common format is its first
//! part and reads too):
//!
//! ```text
//! 203.0.113.7 - - [30/Nov/2026:10:00:01 +0000] "POST /login HTTP/1.1" 401 12 "-" "curl/8.5"
//! ```
//!
//! JSON lines, one object per line; the names nginx's and Caddy's JSON
//! logs use are understood:
//!
//! | field | also read as | what |
//! |---|---|---|
//! | `time` | `timestamp`, `ts`, `time_iso8601`, `time_local`, `msec` | RFC 3339, the combined format's time, or seconds since the epoch (milliseconds when over 10¹²) |
//! | `remote_addr` | `ip`, `client_ip`, `remote_ip` | the peer's address |
//! | `method` | `request_method` | |
//! | `path` | `uri`, `request_uri`, `url` | the request target |
//! | `status` | | the response's status |
//! | `headers` | | an object of request headers (`x-api-key`, `x-forwarded-for`, …) for rules that read them |

use std::net::IpAddr;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// One request from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When, in milliseconds since the epoch.
    pub time_ms: u64,
    /// The peer's address.
    pub ip: IpAddr,
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// The response's status.
    pub status: u16,
    /// Request headers the log recorded (JSON lines only).
    pub headers: Vec<(String, String)>,
}

/// Why a line was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable(pub &'static str);

/// Reads lines, remembering the last timestamp text it parsed (a busy log
/// repeats each second many times).
#[derive(Debug, Default)]
pub struct Parser {
    last_time: String,
    last_ms: u64,
}

impl Parser {
    /// A parser.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// One line, in either format (a JSON line starts with `{`).
    ///
    /// # Errors
    ///
    /// When the line is in neither format, or a field is out of range.
    pub fn parse(&mut self, line: &str) -> Result<Entry, Unreadable> {
        let line = line.trim();
        if line.starts_with('{') {
            self.json(line)
        } else {
            self.combined(line)
        }
    }

    fn combined(&mut self, line: &str) -> Result<Entry, Unreadable> {
        let (ip, rest) = line.split_once(' ').ok_or(Unreadable("no address"))?;
        let ip: IpAddr = ip.parse().map_err(|_| Unreadable("no address"))?;
        let open = rest.find('[').ok_or(Unreadable("no [time]"))?;
        let close = rest[open..].find(']').ok_or(Unreadable("no [time]"))? + open;
        let time_ms = self.clf_time(&rest[open + 1..close])?;
        let rest = rest[close + 1..].trim_start();
        let rest = rest.strip_prefix('"').ok_or(Unreadable("no \"request\""))?;
        let end = rest.find('"').ok_or(Unreadable("no \"request\""))?;
        let mut request = rest[..end].split(' ');
        let method = request
            .next()
            .filter(|m| !m.is_empty())
            .ok_or(Unreadable("no method"))?;
        let path = request.next().ok_or(Unreadable("no request target"))?;
        let status = rest[end + 1..]
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..=999).contains(s))
            .ok_or(Unreadable("no status"))?;
        Ok(Entry {
            time_ms,
            ip,
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            headers: Vec::new(),
        })
    }

    /// `30/Nov/2026:10:00:01 +0000`.
    fn clf_time(&mut self, text: &str) -> Result<u64, Unreadable> {
        if text == self.last_time {
            return Ok(self.last_ms);
        }
        let format = format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
        );
        let at = OffsetDateTime::parse(text, format).map_err(|_| Unreadable("bad time"))?;
        let ms = epoch_ms(at)?;
        text.clone_into(&mut self.last_time);
        self.last_ms = ms;
        Ok(ms)
    }

    fn json(&mut self, line: &str) -> Result<Entry, Unreadable> {
        let parsed: JsonLine = serde_json::from_str(line).map_err(|_| Unreadable("bad JSON"))?;
        let time_ms = match parsed.time.ok_or(Unreadable("no time"))? {
            JsonTime::Number(n) if n.is_finite() && n >= 0.0 => {
                // Seconds, or milliseconds when that large (after 2001).
                let ms = if n > 1e12 { n } else { n * 1_000.0 };
                if ms > 1e17 {
                    return Err(Unreadable("bad time"));
                }
                // Finite, non-negative and bounded: the cast is exact enough.
                ms as u64
            }
            JsonTime::Number(_) => return Err(Unreadable("bad time")),
            JsonTime::Text(text) => match OffsetDateTime::parse(&text, &Rfc3339) {
                Ok(at) => epoch_ms(at)?,
                Err(_) => self.clf_time(&text)?,
            },
        };
        let ip = parsed
            .remote_addr
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .ok_or(Unreadable("no address"))?;
        let (method, path) = match (parsed.method, parsed.path, parsed.request) {
            (Some(method), Some(path), _) => (method, path),
            (_, _, Some(request)) => {
                let mut parts = request.split(' ');
                match (parts.next(), parts.next()) {
                    (Some(m), Some(p)) if !m.is_empty() => (m.to_owned(), p.to_owned()),
                    _ => return Err(Unreadable("no method")),
                }
            }
            _ => return Err(Unreadable("no method")),
        };
        let status = match parsed.status.ok_or(Unreadable("no status"))? {
            JsonStatus::Number(n) => u16::try_from(n).ok(),
            JsonStatus::Text(text) => text.parse().ok(),
        }
        .filter(|s| (100..=999).contains(s))
        .ok_or(Unreadable("no status"))?;
        let headers = parsed
            .headers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| match value {
                serde_json::Value::String(text) => Some((name, text)),
                _ => None,
            })
            .collect();
        Ok(Entry {
            time_ms,
            ip,
            method,
            path,
            status,
            headers,
        })
    }
}

fn epoch_ms(at: OffsetDateTime) -> Result<u64, Unreadable> {
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| Unreadable("bad time"))
}

#[derive(Deserialize)]
struct JsonLine {
    #[serde(
        alias = "timestamp",
        alias = "ts",
        alias = "time_iso8601",
        alias = "time_local"
    )]
    #[serde(alias = "msec")]
    time: Option<JsonTime>,
    #[serde(alias = "ip", alias = "client_ip", alias = "remote_ip")]
    remote_addr: Option<String>,
    #[serde(alias = "request_method")]
    method: Option<String>,
    #[serde(alias = "uri", alias = "request_uri", alias = "url")]
    path: Option<String>,
    /// nginx's `$request`: `GET /path HTTP/1.1`.
    request: Option<String>,
    status: Option<JsonStatus>,
    headers: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonTime {
    Number(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonStatus {
    Number(u64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_lines_of_nginx_and_apache_read_alike() {
        let mut parser = Parser::new();
        let nginx = r#"203.0.113.7 - - [30/Nov/2026:10:00:01 +0000] "POST /login HTTP/1.1" 401 12 "-" "curl/8.5""#;
        let apache = r#"2001:db8::1 - frank [30/Nov/2026:11:00:01 +0100] "GET /items/1?x=y HTTP/1.0" 200 2326"#;
        let a = parser.parse(nginx).unwrap();
        let b = parser.parse(apache).unwrap();
        assert_eq!(a.time_ms, 1_796_032_801_000);
        assert_eq!(b.time_ms, a.time_ms, "the offsets are applied");
        assert_eq!(
            (a.method.as_str(), a.path.as_str(), a.status),
            ("POST", "/login", 401)
        );
        assert_eq!(b.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(b.path, "/items/1?x=y");
    }

    #[test]
    fn json_lines_with_the_usual_names_read() {
        let mut parser = Parser::new();
        let caddy = r#"{"ts": 1764496801.5, "remote_ip": "203.0.113.7", "method": "GET", "uri": "/a", "status": 200, "headers": {"x-api-key": "k1"}}"#;
        let nginx = r#"{"time_iso8601": "2026-11-30T10:00:01+00:00", "remote_addr": "203.0.113.7", "request": "GET /b HTTP/1.1", "status": "429"}"#;
        let a = parser.parse(caddy).unwrap();
        assert_eq!(a.time_ms, 1_764_496_801_500);
        assert_eq!(a.headers, [("x-api-key".to_owned(), "k1".to_owned())]);
        let b = parser.parse(nginx).unwrap();
        assert_eq!(
            (b.time_ms, b.path.as_str(), b.status),
            (1_796_032_801_000, "/b", 429)
        );
    }

    #[test]
    fn broken_lines_say_what_is_missing() {
        let mut parser = Parser::new();
        for (line, why) in [
            ("", "no address"),
            ("nonsense", "no address"),
            (
                "203.0.113.7 - - [yesterday] \"GET / HTTP/1.1\" 200 1",
                "bad time",
            ),
            (
                "203.0.113.7 - - [30/Nov/2026:10:00:01 +0000] \"GET / HTTP/1.1\" 99999 1",
                "no status",
            ),
            ("{\"ts\": -1, \"ip\": \"1.2.3.4\"}", "bad time"),
            ("{\"ts\": 1e300, \"ip\": \"1.2.3.4\"}", "bad time"),
            ("{\"ts\": 1, \"ip\": \"nope\"}", "no address"),
            ("{not json", "bad JSON"),
        ] {
            assert_eq!(parser.parse(line), Err(Unreadable(why)), "{line}");
        }
    }

    proptest::proptest! {
        /// No line makes the parser panic.
        #[test]
        fn any_line_is_read_or_refused(line in "\\PC{0,200}") {
            let _ = Parser::new().parse(&line);
        }

        #[test]
        fn any_combined_shaped_line_is_read_or_refused(
            ip in "[0-9a-f:.]{0,20}",
            time in "[0-9A-Za-z/: +-]{0,30}",
            request in "[ -~]{0,40}",
            status in "[0-9]{0,6}",
        ) {
            let line = format!("{ip} - - [{time}] \"{request}\" {status} 1 \"-\" \"-\"");
            let _ = Parser::new().parse(&line);
        }
    }
}
