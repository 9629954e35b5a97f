//! Run with `cargo run -p traffik-examples --example strategies`.
//!
//! Fires the same bursty load at all six strategies on the in-memory backend,
//! with a simulated clock, and prints side by side what each admitted over
//! time. No server, no waiting: the four simulated seconds take milliseconds.

use traffik_backends::memory::MemoryBackend;
use traffik_core::{AnyStrategy, Clock, ManualClock, StrategyKind, Throttle};

/// One column of the picture.
const SLOT_MS: u64 = 100;
/// Four simulated seconds.
const SLOTS: usize = 40;
const RATE: &str = "5/s";

/// How many hits arrive in each 100 ms slot.
fn offered(slot: usize) -> u64 {
    match slot {
        0 => 8,       // a burst from a fresh client
        1..=4 => 1,   // then a steady 10/s, twice the limit
        19 | 20 => 6, // after a pause, a burst on both sides of a window edge
        21..=29 => 1, // the steady 10/s again
        35 => 10,     // after a pause, one more burst
        _ => 0,
    }
}

fn digit(n: u64) -> char {
    match n {
        0 => '.',
        1..=9 => char::from(b'0' + n as u8),
        _ => '+',
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = 1_700_000_000_000; // on a whole second, so windows line up with columns
    let load: String = (0..SLOTS).map(|slot| digit(offered(slot))).collect();
    println!(
        "Rate {RATE}. Each column is {SLOT_MS} ms; a digit is how many hits that slot admitted ('.' none)."
    );
    println!();
    println!("{:<24}{}", "time (s)", ruler());
    println!(
        "{:<24}{load}   offered {}",
        "offered",
        (0..SLOTS).map(offered).sum::<u64>()
    );
    for kind in StrategyKind::ALL {
        let clock = ManualClock::new(start);
        let throttle = Throttle::builder("demo", RATE.parse()?)
            .strategy(AnyStrategy::from(kind))
            .clock(clock.clone())
            .build(MemoryBackend::new())?;
        let mut row = String::new();
        let mut admitted_at = Vec::new();
        for slot in 0..SLOTS {
            let n = offered(slot);
            let slot_start = start + slot as u64 * SLOT_MS;
            let mut admitted = 0;
            for i in 0..n {
                // Spread the slot's hits evenly over it.
                clock.set(slot_start + i * SLOT_MS / n.max(1));
                if throttle.hit("client").await?.is_allowed() {
                    admitted += 1;
                    admitted_at.push(clock.now_ms());
                }
            }
            row.push(digit(admitted));
            clock.set(slot_start + SLOT_MS);
        }
        let busiest = busiest_second(&admitted_at);
        println!(
            "{:<24}{row}   admitted {:>2}, busiest second {busiest}",
            kind.as_str(),
            admitted_at.len()
        );
    }
    println!();
    println!("\"busiest second\" is the most hits admitted in any 1,000 ms, wherever it starts.");
    Ok(())
}

fn ruler() -> String {
    (0..SLOTS)
        .map(|slot| {
            if slot % 10 == 0 {
                char::from(b'0' + (slot / 10) as u8)
            } else {
                ' '
            }
        })
        .collect()
}

fn busiest_second(times: &[u64]) -> usize {
    times
        .iter()
        .map(|&from| {
            times
                .iter()
                .filter(|&&t| t >= from && t < from + 1_000)
                .count()
        })
        .max()
        .unwrap_or(0)
}
