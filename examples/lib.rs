//! traffik's runnable examples. Each file in this folder is one; its first
//! line says how to run it, e.g.
//! `cargo run -p traffik-examples --example strategies`.
