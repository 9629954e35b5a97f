//! A synthetic day of combined-format access logs, for tests, the replay
//! benchmark and the documentation's picture: steady clients, a password
//! guesser on `/login` (10:00 to 10:30) and a scraper of `/items/{id}`
//! (14:00 to 15:00). Deterministic: the same lines for the same seed.

use std::fmt::Write;

/// `lines` combined-format lines spread evenly over 24 hours of
/// 2026-11-30 (UTC), as nginx writes them.
pub fn day(lines: u64, seed: u64) -> String {
    let mut out = String::with_capacity(usize::try_from(lines).unwrap_or(0).saturating_mul(110));
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64: test data, not secrets.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const START_S: u64 = 1_795_996_800; // 2026-11-30T00:00:00Z
    const DAY_S: u64 = 86_400;
    for n in 0..lines {
        let at = START_S + n * DAY_S / lines.max(1);
        let of_day = at - START_S;
        let roll = next() % 100;
        let (ip, method, path, status) = if (36_000..37_800).contains(&of_day) && roll < 30 {
            ("198.51.100.66".to_owned(), "POST", "/login".to_owned(), 401)
        } else if (50_400..54_000).contains(&of_day) && roll < 40 {
            (
                "192.0.2.200".to_owned(),
                "GET",
                format!("/items/{}", next() % 10_000),
                200,
            )
        } else {
            let client = next() % 5_000;
            let ip = format!("203.0.{}.{}", client / 250, client % 250);
            match roll % 10 {
                0 => (
                    ip,
                    "POST",
                    "/login".to_owned(),
                    if roll < 50 { 200 } else { 401 },
                ),
                1..=4 => (ip, "GET", format!("/items/{}", next() % 10_000), 200),
                _ => (ip, "GET", "/".to_owned(), 200),
            }
        };
        let (h, m, s) = (of_day / 3_600, of_day / 60 % 60, of_day % 60);
        let _ = writeln!(
            out,
            "{ip} - - [30/Nov/2026:{h:02}:{m:02}:{s:02} +0000] \"{method} {path} HTTP/1.1\" {status} 512 \"-\" \"Mozilla/5.0\""
        );
    }
    out
}
