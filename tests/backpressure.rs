//! The memory cap: a pipeline whose sink is stalled never buffers more than its
//! configured bytes, `block` stops the source from reading, and `drop_newest`
//! accounts for every event (received = consumed + dropped, exactly).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use profpipe::buffer::{BufferConfig, WhenFull};
use profpipe::component::{BuildError, SinkConfig, SinkContext, Task};
use profpipe::config::{AgentConfig, Config, SinkEntry, SourceEntry, TelemetryConfig};
use profpipe::sources::file::{FileSourceConfig, InputFormat};
use profpipe::telemetry::Telemetry;
use profpipe::topology::{self, RunningTopology};
use profpipe::units::ByteSize;
use tokio::sync::watch;

/// A sink that reads nothing until its gate opens, then consumes everything.
#[derive(Debug)]
struct StalledSink {
    gate: watch::Receiver<bool>,
    consumed_events: Arc<AtomicU64>,
    consumed_bytes: Arc<AtomicU64>,
}

impl SinkConfig for StalledSink {
    fn inputs(&self) -> profpipe::event::DataTypes {
        profpipe::event::DataTypes::ALL
    }
    fn build(&self, cx: SinkContext) -> Result<Task, BuildError> {
        let mut gate = self.gate.clone();
        let (events, bytes) = (self.consumed_events.clone(), self.consumed_bytes.clone());
        let SinkContext { cx, mut input } = cx;
        Ok(Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
            while let Some(ev) = input.recv().await {
                if let profpipe::event::Event::PerfScript(c) = &ev {
                    events.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(c.data.len() as u64, Ordering::Relaxed);
                    cx.metrics.sent(ev.size_bytes());
                }
            }
            Ok(())
        }))
    }
}

/// Writes `mb` MiB of perf-script-shaped records (whole records, blank-line separated).
fn capture(mb: usize) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let record = b"app 1234 1000.000001: 1 cpu-clock:\n\tffffffff81000000 do_work+0x10 ([kernel.kallsyms])\n\t5555 main+0x5 (/usr/bin/app)\n\n";
    let n = mb * 1024 * 1024 / record.len();
    let mut w = std::io::BufWriter::new(&mut f);
    for _ in 0..n {
        w.write_all(record).unwrap();
    }
    drop(w);
    f
}

/// Waits until a component's sent count stops moving (a non-blocked source finished).
async fn wait_until_quiet(m: &profpipe::telemetry::ComponentMetrics) {
    let mut last = u64::MAX;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = m.sent_events();
        if now == last && now > 0 {
            return;
        }
        last = now;
    }
    panic!("component never went quiet");
}

struct Harness {
    open_gate: watch::Sender<bool>,
    consumed_events: Arc<AtomicU64>,
    consumed_bytes: Arc<AtomicU64>,
    telemetry: Telemetry,
}

fn pipeline(
    path: &str,
    sinks: &[(&str, BufferConfig)],
    memory_limit: ByteSize,
) -> (Config, Harness) {
    let (open_gate, gate) = watch::channel(false);
    let consumed_events = Arc::new(AtomicU64::new(0));
    let consumed_bytes = Arc::new(AtomicU64::new(0));
    let source = FileSourceConfig {
        paths: vec![path.to_string()],
        format: InputFormat::PerfScript,
        read_size: ByteSize(64 * 1024),
        ..Default::default()
    };
    let config = Config {
        agent: AgentConfig {
            memory_limit,
            ..Default::default()
        },
        telemetry: TelemetryConfig::default(),
        sources: vec![SourceEntry {
            id: "capture".into(),
            type_name: "file",
            labels: Default::default(),
            config: Box::new(source),
        }],
        transforms: vec![],
        sinks: sinks
            .iter()
            .map(|(id, buffer)| SinkEntry {
                id: (*id).into(),
                type_name: "stalled",
                inputs: vec!["capture".into()],
                buffer: *buffer,
                config: Box::new(StalledSink {
                    gate: gate.clone(),
                    consumed_events: consumed_events.clone(),
                    consumed_bytes: consumed_bytes.clone(),
                }),
            })
            .collect(),
    };
    let h = Harness {
        open_gate,
        consumed_events,
        consumed_bytes,
        telemetry: Telemetry::new(),
    };
    (config, h)
}

fn start(config: &Config, h: &Harness) -> RunningTopology {
    let built = topology::build(config, &h.telemetry, "test-host".into()).unwrap();
    RunningTopology::start(built)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_caps_buffered_bytes_and_stops_the_source() {
    let file = capture(40);
    let cap = ByteSize(1024 * 1024);
    let buffer = BufferConfig {
        max_bytes: cap,
        when_full: WhenFull::Block,
    };
    let (config, h) = pipeline(
        file.path().to_str().unwrap(),
        &[("sink", buffer)],
        ByteSize::mib(64),
    );
    let running = start(&config, &h);
    let source = h.telemetry.component("capture", "source", "file");
    let sink = h.telemetry.component("sink", "sink", "stalled");

    // While the sink is stalled: the buffer fills to at most its cap, then the source
    // stops (its sent count stops moving).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_a = source.sent_events();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_b = source.sent_events();
    assert_eq!(sent_a, sent_b, "source kept sending into a full buffer");
    assert!(sent_b > 0);
    assert!(
        sink.buffer_peak_bytes() <= cap.get(),
        "peak {} > cap {}",
        sink.buffer_peak_bytes(),
        cap.get()
    );
    assert!(running.memory_budget().in_use() <= cap.get());

    // Release: everything drains, nothing lost.
    h.open_gate.send(true).unwrap();
    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    assert!(outcome.is_clean(), "{outcome:?}");
    let file_len = std::fs::metadata(file.path()).unwrap().len();
    assert_eq!(h.consumed_bytes.load(Ordering::Relaxed), file_len);
    assert_eq!(
        sink.received_events(),
        h.consumed_events.load(Ordering::Relaxed)
    );
    assert_eq!(sink.discarded_events(), 0);
    assert!(sink.buffer_peak_bytes() <= cap.get());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_accounts_for_every_event() {
    let file = capture(20);
    let buffer = BufferConfig {
        max_bytes: ByteSize(512 * 1024),
        when_full: WhenFull::DropNewest,
    };
    let (config, h) = pipeline(
        file.path().to_str().unwrap(),
        &[("sink", buffer)],
        ByteSize::mib(64),
    );
    let running = start(&config, &h);
    let sink = h.telemetry.component("sink", "sink", "stalled");
    // The source runs to the end of the file against a stalled sink, dropping.
    wait_until_quiet(&h.telemetry.component("capture", "source", "file")).await;
    assert!(
        sink.discarded_events() > 0,
        "expected drops against a stalled sink"
    );
    assert!(sink.buffer_peak_bytes() <= 512 * 1024);
    h.open_gate.send(true).unwrap();
    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    assert!(outcome.is_clean(), "{outcome:?}");
    let consumed = h.consumed_events.load(Ordering::Relaxed);
    assert_eq!(sink.received_events(), consumed + sink.discarded_events());
    assert_eq!(sink.sent_events(), consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_memory_limit_caps_the_sum_over_edges() {
    let file = capture(20);
    let big = BufferConfig {
        max_bytes: ByteSize::mib(16),
        when_full: WhenFull::DropNewest,
    };
    let limit = ByteSize(1024 * 1024);
    let (config, h) = pipeline(
        file.path().to_str().unwrap(),
        &[("a", big), ("b", big)],
        limit,
    );
    let running = start(&config, &h);
    let mut peak = 0;
    for _ in 0..50 {
        peak = peak.max(running.memory_budget().in_use());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(peak <= limit.get(), "in use {peak} > limit {}", limit.get());
    let (a, b) = (
        h.telemetry.component("a", "sink", "stalled"),
        h.telemetry.component("b", "sink", "stalled"),
    );
    assert!(a.buffer_peak_bytes() + b.buffer_peak_bytes() <= 2 * limit.get());
    h.open_gate.send(true).unwrap();
    let outcome = running
        .run_until(std::future::pending(), Duration::from_secs(30))
        .await;
    assert!(outcome.is_clean(), "{outcome:?}");
    for s in [&a, &b] {
        assert_eq!(s.received_events(), s.sent_events() + s.discarded_events());
    }
}
