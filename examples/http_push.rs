//! A load generator for the `http_server` source (used by
//! `scripts/measure-http-server.sh`): CLIENTS tasks, each pushing folded bodies of
//! LINES distinct stacks to `/ingest` back to back for SECS seconds, as host
//! `client-<k>`, each push a new 10 s window. Prints one line:
//! `requests=N ok=N errors=N bytes=N secs=F`.
//!
//!     cargo run --release --example http_push -- http://127.0.0.1:4040 10 4 1000

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, secs, clients, lines] = args.as_slice() else {
        eprintln!("usage: http_push URL SECS CLIENTS LINES");
        std::process::exit(2);
    };
    let secs: u64 = secs.parse().expect("SECS");
    let clients: usize = clients.parse().expect("CLIENTS");
    let lines: usize = lines.parse().expect("LINES");
    let body: bytes::Bytes = (0..lines)
        .map(|i| {
            format!(
                "python3;main (app.py:1);handle_{i} (app.py:{i});leaf_{} (lib.py:9) {}\n",
                i % 7,
                i % 50 + 1
            )
        })
        .collect::<String>()
        .into();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for k in 0..clients {
        let (client, counts, body, url) =
            (client.clone(), counts.clone(), body.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut from = 1_701_621_000u64;
            while Instant::now() < deadline {
                let q = format!(
                    "name=bench.cpu%7Bhost%3Dclient-{k}%7D&from={from}&until={}",
                    from + 10
                );
                from += 10;
                let r = client
                    .post(format!("{url}/ingest?{q}"))
                    .body(body.clone())
                    .send()
                    .await;
                counts.requests.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(r) if r.status().is_success() => {
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                        counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    }
                    _ => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = &counts;
    println!(
        "requests={} ok={} errors={} bytes={} secs={:.2}",
        c.requests.load(Ordering::Relaxed),
        c.ok.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed),
        c.bytes.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
}
