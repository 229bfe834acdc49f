// A CPU-bound Rust program with distinctive frames for the perf.data tests:
// main -> profpipe_rs_churn (a HashMap workout). Runs for argv[1] seconds.
// Built with `rustc -O -C force-frame-pointers=yes` so frame-pointer unwinding works.
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[inline(never)]
fn profpipe_rs_churn(n: u64) -> u64 {
    let mut m: HashMap<u64, u64> = HashMap::new();
    for i in 0..n {
        *m.entry(i % 1000).or_insert(0) += i;
    }
    m.values().sum()
}

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut total = 0u64;
    while Instant::now() < end {
        total = total.wrapping_add(profpipe_rs_churn(100_000));
    }
    println!("{total}");
}
