//! Reloading a running topology: sink changes are applied in place while the
//! source keeps running (one build, its events flowing to the new sinks); other
//! changes are left to a restart.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::collect::Collect;
use common::run;
use profpipe::buffer::BufferConfig;
use profpipe::component::{BuildError, SourceConfig, SourceContext, Task};
use profpipe::config::{Config, SinkEntry};
use profpipe::event::{Event, Labels, Profile, Stack, Watermark, Window};
use profpipe::telemetry::Telemetry;
use profpipe::topology::Reloaded;
use profpipe::units::ByteSize;
use tokio::sync::mpsc;

/// Emits one profile (stack `tick;<n>`) per number received; ends when the
/// sender is dropped or the source is stopped. Each build takes the next receiver;
/// builds are counted.
#[derive(Debug, Clone)]
struct Ticks {
    rxs: Arc<Mutex<Vec<mpsc::UnboundedReceiver<u64>>>>,
    builds: Arc<AtomicUsize>,
}

impl SourceConfig for Ticks {
    fn outputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::PROFILE
    }
    fn build(&self, cx: SourceContext) -> Result<Task, BuildError> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        let mut rx = self.rxs.lock().unwrap().remove(0);
        let SourceContext { cx, mut out } = cx;
        let mut stop = cx.shutdown.clone();
        Ok(Box::pin(async move {
            loop {
                let n = tokio::select! {
                    _ = stop.recv() => break,
                    n = rx.recv() => match n {
                        Some(n) => n,
                        None => break,
                    },
                };
                let labels = Labels {
                    host: cx.host.clone(),
                    source: cx.id.clone(),
                    profiler: "test".into(),
                    ..Labels::default()
                };
                let stack = Stack::new(format!("tick;{n}"), 1);
                let p = Profile::new(Window::new(n * 1000, n * 1000 + 1000), labels, vec![stack]);
                if out.send(Event::Profile(p)).await.is_err() {
                    break;
                }
            }
            let _ = out
                .send(Event::Watermark(Watermark {
                    source: cx.id.clone(),
                    complete_until_ms: Watermark::FINISHED,
                }))
                .await;
            Ok(())
        }))
    }
}

fn sink(id: &str, declared: &str, collect: &Collect, buffer: BufferConfig) -> SinkEntry {
    let mut s = run::sink_with_buffer(id, "collect", &["ticks"], buffer, collect.clone());
    s.declared = declared.to_string();
    s
}

fn config(source: &Ticks, source_text: &str, sinks: Vec<SinkEntry>) -> Config {
    config_in(
        std::path::Path::new("/nonexistent"),
        source,
        source_text,
        sinks,
    )
}

fn config_in(
    state_dir: &std::path::Path,
    source: &Ticks,
    source_text: &str,
    sinks: Vec<SinkEntry>,
) -> Config {
    let mut src = run::source("ticks", "ticks", source.clone());
    src.declared = source_text.to_string();
    run::config(run::agent_with_state(state_dir), vec![src], vec![], sinks)
}

fn ticks() -> (mpsc::UnboundedSender<u64>, Ticks) {
    let (mut txs, source) = ticks_built(1);
    (txs.remove(0), source)
}

/// A source that can be built `n` times, and the senders of each build.
fn ticks_built(n: usize) -> (Vec<mpsc::UnboundedSender<u64>>, Ticks) {
    let (txs, rxs) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
    let source = Ticks {
        rxs: Arc::new(Mutex::new(rxs)),
        builds: Arc::new(AtomicUsize::new(0)),
    };
    (txs, source)
}

fn ticks_seen(c: &Collect) -> Vec<String> {
    c.with(|events| {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Profile(p) => Some(p.stacks[0].frames.to_string()),
                _ => None,
            })
            .collect()
    })
}

fn sinks(replaced: usize, added: usize, removed: usize) -> Reloaded {
    Reloaded::InPlace {
        rebuilt: 0,
        replaced,
        added,
        removed,
    }
}

async fn got(c: &Collect, n: usize) {
    c.wait_until(
        &format!("{n} profiles"),
        Duration::from_secs(10),
        |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::Profile(_)))
                .count()
                >= n
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_change_in_place_while_the_source_runs_on() {
    let (tx, source) = ticks();
    let memory = BufferConfig::default();
    let (a, b, c, d) = (
        Collect::new(),
        Collect::new(),
        Collect::new(),
        Collect::new(),
    );
    let first = config(&source, "s", vec![sink("out", "a", &a, memory)]);
    let mut running = run::start(&first, &Telemetry::new());

    tx.send(1).unwrap();
    got(&a, 1).await;

    // A changed sink, same buffer: the new one reads on from the same buffer.
    let r = running
        .reload(&config(&source, "s", vec![sink("out", "b", &b, memory)]))
        .await
        .unwrap();
    assert_eq!(r, sinks(1, 0, 0));
    tx.send(2).unwrap();
    got(&b, 1).await;

    // A changed memory buffer (a new one) and an added sink.
    let bigger = BufferConfig {
        max_bytes: ByteSize(4 << 20),
        ..memory
    };
    let third = config(
        &source,
        "s",
        vec![sink("out", "c", &c, bigger), sink("extra", "d", &d, memory)],
    );
    let r = running.reload(&third).await.unwrap();
    assert_eq!(r, sinks(1, 1, 0));
    tx.send(3).unwrap();
    got(&c, 1).await;
    got(&d, 1).await;

    // The same config again changes nothing; a removed sink ends.
    assert_eq!(running.reload(&third).await.unwrap(), Reloaded::Unchanged);
    let fourth = config(&source, "s", vec![sink("out", "c", &c, bigger)]);
    let r = running.reload(&fourth).await.unwrap();
    assert_eq!(r, sinks(0, 0, 1));
    tx.send(4).unwrap();
    got(&c, 2).await;

    drop(tx);
    let outcome = running.stop().await;
    assert!(outcome.is_clean(), "{outcome:?}");
    assert_eq!(
        source.builds.load(Ordering::SeqCst),
        1,
        "the source was rebuilt"
    );
    // Every profile reached exactly one generation of `out`.
    assert_eq!(ticks_seen(&a), ["tick;1"]);
    assert_eq!(ticks_seen(&b), ["tick;2"]);
    assert_eq!(ticks_seen(&c), ["tick;3", "tick;4"]);
    assert_eq!(ticks_seen(&d), ["tick;3"]);
}

/// A sink that fails at once.
#[derive(Debug)]
struct Fails;

impl profpipe::component::SinkConfig for Fails {
    fn inputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::ALL
    }
    fn build(&self, _cx: profpipe::component::SinkContext) -> Result<Task, BuildError> {
        Ok(Box::pin(async {
            Err(profpipe::component::ComponentError::Other("broken".into()))
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_ends_lets_its_producers_see_it_gone() {
    let (tx, source) = ticks();
    let mut fails = run::sink("out", "fails", &["ticks"], Fails);
    fails.declared = "f".into();
    let config = config(&source, "s", vec![fails]);
    let mut running = run::start(&config, &Telemetry::new());
    // Ticks keep coming; once the sink has failed, the source's sends fail and it
    // ends, so the whole topology ends.
    let ticker = tokio::spawn(async move {
        for n in 0.. {
            if tx.send(n).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        running.until(std::future::pending::<()>()),
    )
    .await;
    assert!(matches!(ended, Ok(None)), "the source kept running");
    let outcome = running.stop().await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    ticker.abort();
}

/// A changed sink behind a disk buffer gets the same buffer, in the same process:
/// no second lock, and the new sink reads on where the old one stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_buffer_is_handed_to_the_changed_sink() {
    let state = tempfile::tempdir().unwrap();
    let (tx, source) = ticks();
    let disk = BufferConfig {
        kind: profpipe::buffer::BufferKind::Disk,
        max_bytes: ByteSize(16 << 20),
        ..BufferConfig::default()
    };
    let (a, b) = (Collect::new(), Collect::new());
    let first = config_in(state.path(), &source, "s", vec![sink("out", "a", &a, disk)]);
    let mut running = run::start(&first, &Telemetry::new());
    tx.send(1).unwrap();
    got(&a, 1).await;

    let second = config_in(state.path(), &source, "s", vec![sink("out", "b", &b, disk)]);
    assert_eq!(running.reload(&second).await.unwrap(), sinks(1, 0, 0));
    tx.send(2).unwrap();
    got(&b, 1).await;

    drop(tx);
    let outcome = running.stop().await;
    assert!(outcome.is_clean(), "{outcome:?}");
    assert_eq!(ticks_seen(&a), ["tick;1"]);
    assert_eq!(ticks_seen(&b), ["tick;2"]);
}

/// A changed source is rebuilt with what is downstream of it; the other source
/// keeps running and switches to the new sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_source_is_rebuilt_and_the_other_runs_on() {
    let (kept_tx, kept) = ticks();
    let (other_txs, other) = ticks_built(2);
    let (a, b) = (Collect::new(), Collect::new());
    let pipeline = |other_text: &str, collect: &Collect| {
        let mut k = run::source("kept", "ticks", kept.clone());
        k.declared = "k".into();
        let mut o = run::source("other", "ticks", other.clone());
        o.declared = other_text.into();
        let mut out = run::sink("out", "collect", &["kept", "other"], collect.clone());
        out.declared = "out".into();
        run::config(
            run::agent_with_state(std::path::Path::new("/nonexistent")),
            vec![k, o],
            vec![],
            vec![out],
        )
    };
    let mut running = run::start(&pipeline("o1", &a), &Telemetry::new());
    kept_tx.send(1).unwrap();
    got(&a, 1).await;

    let r = running.reload(&pipeline("o2", &b)).await.unwrap();
    assert_eq!(
        r,
        Reloaded::InPlace {
            rebuilt: 1,
            replaced: 1,
            added: 0,
            removed: 0
        }
    );
    kept_tx.send(2).unwrap();
    other_txs[1].send(3).unwrap();
    got(&b, 2).await;

    drop((kept_tx, other_txs));
    let outcome = running.stop().await;
    assert!(outcome.is_clean(), "{outcome:?}");
    assert_eq!(
        kept.builds.load(Ordering::SeqCst),
        1,
        "the unchanged source was rebuilt"
    );
    assert_eq!(other.builds.load(Ordering::SeqCst), 2);
    assert_eq!(ticks_seen(&a), ["tick;1"]);
    let mut second = ticks_seen(&b);
    second.sort();
    assert_eq!(second, ["tick;2", "tick;3"]);
}
