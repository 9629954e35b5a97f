//! Writes a synthetic day of access logs: `cargo run -p traffik-cli
//! --example sample_day -- <lines> > access.log`.

fn main() {
    let lines = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    print!("{}", traffik_cli::sample::day(lines, 7));
}
