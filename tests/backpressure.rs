//! The memory cap: a pipeline whose sink is stalled never buffers more than its
//! configured bytes, `block` stops the source from reading, and `drop_newest`
//! accounts for every event (received = consumed + dropped, exactly).
//!
//! The tests run on a current-thread runtime with a paused clock: `settle()` returns
//! once no task can make progress, so "the source has stopped" is a fact, not a
//! guess about how long it needs; and a gated sink measures, from the consumer side,
//! exactly what its edge held when the gate opened.

mod common;

use std::io::Write;

use common::collect::Collect;
use common::events::budget_bytes;
use common::run;
use common::wait::settle;
use profpipe::buffer::{BufferConfig, WhenFull};
use profpipe::config::{AgentConfig, Config};
use profpipe::event::Event;
use profpipe::sources::file::{FileSourceConfig, InputFormat};
use profpipe::telemetry::Telemetry;
use profpipe::topology::RunningTopology;
use profpipe::units::ByteSize;
use tokio::sync::watch;

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

/// Events and payload bytes of the perf-script chunks in `events`.
fn perf_data(events: &[Event]) -> (u64, u64) {
    events.iter().fold((0, 0), |(n, b), e| match e {
        Event::PerfScript(c) => (n + 1, b + c.data.len() as u64),
        _ => (n, b),
    })
}

struct Harness {
    open_gate: watch::Sender<bool>,
    sinks: Vec<Collect>,
    telemetry: Telemetry,
}

/// file source → one gated collect sink per entry of `sinks`.
fn pipeline(
    path: &str,
    sinks: &[(&str, BufferConfig)],
    memory_limit: ByteSize,
) -> (Config, Harness) {
    let (open_gate, gate) = watch::channel(false);
    let source = FileSourceConfig {
        paths: vec![path.to_string()],
        format: InputFormat::PerfScript,
        read_size: ByteSize(64 * 1024),
        ..Default::default()
    };
    let collects: Vec<Collect> = sinks.iter().map(|_| Collect::gated(gate.clone())).collect();
    let config = run::config(
        AgentConfig {
            memory_limit,
            ..Default::default()
        },
        vec![run::source("capture", "file", source)],
        vec![],
        sinks
            .iter()
            .zip(&collects)
            .map(|((id, buffer), c)| {
                run::sink_with_buffer(id, "collect", &["capture"], *buffer, c.clone())
            })
            .collect(),
    );
    let h = Harness {
        open_gate,
        sinks: collects,
        telemetry: Telemetry::new(),
    };
    (config, h)
}

/// Starts [`pipeline`] over a [`capture`] of `mb` MiB with one sink, `sink`, whose
/// buffer holds `max_bytes`, under a 64 MiB agent limit.
fn start_one_sink(
    mb: usize,
    max_bytes: ByteSize,
    when_full: WhenFull,
) -> (tempfile::NamedTempFile, Harness, RunningTopology) {
    let file = capture(mb);
    let buffer = BufferConfig {
        max_bytes,
        when_full,
        ..Default::default()
    };
    let path = file.path().to_str().unwrap();
    let (config, h) = pipeline(path, &[("sink", buffer)], ByteSize::mib(64));
    let running = run::start(&config, &h.telemetry);
    (file, h, running)
}

#[tokio::test(start_paused = true)]
async fn block_caps_buffered_bytes_and_stops_the_source() {
    let cap = ByteSize(1024 * 1024);
    let (file, h, running) = start_one_sink(40, cap, WhenFull::Block);
    let source = h.telemetry.component("capture", "source", "file");
    let sink = h.telemetry.component("sink", "sink", "collect");

    // While the sink is stalled: the buffer fills, then the source stops (its sent
    // count does not move however long everything else runs).
    settle().await;
    let sent_a = source.sent_events();
    settle().await;
    let sent_b = source.sent_events();
    assert_eq!(sent_a, sent_b, "source kept sending into a full buffer");
    assert!(sent_b > 0);
    let peak_while_stalled = sink.buffer_peak_bytes();
    let agent_in_use = running.memory_budget().in_use();

    // Release: everything drains, nothing lost.
    h.open_gate.send(true).unwrap();
    run::to_end(running).await;
    let collect = &h.sinks[0];
    let events = collect.events();
    let backlog = collect.backlog().expect("the gate opened");
    let held = budget_bytes(&backlog);
    // What the edge held when the sink woke up, measured by the sink: within the cap,
    // and so full that the next event (the one the source was blocked on) did not fit.
    assert!(
        held <= cap.get(),
        "the edge held {held} > cap {}",
        cap.get()
    );
    let blocked_on = &events[backlog.len()];
    assert!(
        held + blocked_on.size_bytes() as u64 > cap.get(),
        "the source stopped with room left: {held} + {} <= {}",
        blocked_on.size_bytes(),
        cap.get()
    );
    // The source got out exactly what the edge held plus the event it waited with: it
    // was blocked, it did not read on and drop.
    assert_eq!(sent_b, backlog.len() as u64 + 1);
    assert!(
        sent_b < perf_data(&events).0,
        "the source ran to the end of the file"
    );
    // The gauges tell the same story as the consumer.
    assert_eq!(peak_while_stalled, held);
    assert_eq!(
        agent_in_use, held,
        "the agent budget holds what the edge holds"
    );

    let file_len = std::fs::metadata(file.path()).unwrap().len();
    let (consumed_events, consumed_bytes) = perf_data(&events);
    assert_eq!(consumed_bytes, file_len);
    assert_eq!(sink.received_events(), consumed_events);
    assert_eq!(sink.discarded_events(), 0);
}

#[tokio::test(start_paused = true)]
async fn drop_newest_accounts_for_every_event() {
    let cap = ByteSize(512 * 1024);
    let (_file, h, running) = start_one_sink(20, cap, WhenFull::DropNewest);
    let sink = h.telemetry.component("sink", "sink", "collect");
    // The source runs to the end of the file against a stalled sink, dropping.
    settle().await;
    assert!(
        sink.discarded_events() > 0,
        "expected drops against a stalled sink"
    );
    let received_while_stalled = sink.received_events();
    h.open_gate.send(true).unwrap();
    run::to_end(running).await;
    let collect = &h.sinks[0];
    let events = collect.events();
    let backlog = collect.backlog().expect("the gate opened");
    // Everything the sink ever got was in its edge at once, within the cap.
    assert!(
        budget_bytes(&backlog) <= cap.get(),
        "{}",
        budget_bytes(&backlog)
    );
    assert_eq!(perf_data(&backlog), perf_data(&events));
    assert_eq!(sink.received_events(), received_while_stalled);

    let consumed = perf_data(&events).0;
    assert_eq!(sink.received_events(), consumed + sink.discarded_events());
    assert_eq!(sink.sent_events(), consumed);
}

#[tokio::test(start_paused = true)]
async fn agent_memory_limit_caps_the_sum_over_edges() {
    let file = capture(20);
    let big = BufferConfig {
        max_bytes: ByteSize::mib(16),
        when_full: WhenFull::DropNewest,
        ..Default::default()
    };
    let limit = ByteSize(1024 * 1024);
    let (config, h) = pipeline(
        file.path().to_str().unwrap(),
        &[("a", big), ("b", big)],
        limit,
    );
    let running = run::start(&config, &h.telemetry);
    // The source reads the whole file while both sinks are stalled: what they get
    // afterwards is what both edges held together.
    settle().await;
    let (a, b) = (
        h.telemetry.component("a", "sink", "collect"),
        h.telemetry.component("b", "sink", "collect"),
    );
    assert!(a.discarded_events() + b.discarded_events() > 0);
    h.open_gate.send(true).unwrap();
    run::to_end(running).await;
    let data = |c: &Collect| {
        let events = c.events();
        let data: Vec<Event> = events.into_iter().filter(|e| !e.is_watermark()).collect();
        (budget_bytes(&data), data.len())
    };
    let ((bytes_a, n_a), (bytes_b, n_b)) = (data(&h.sinks[0]), data(&h.sinks[1]));
    assert!(n_a > 0 && n_b > 0, "{n_a} {n_b}");
    assert!(
        bytes_a + bytes_b <= limit.get(),
        "the edges held {bytes_a} + {bytes_b} > limit {}",
        limit.get()
    );
    assert!(a.buffer_peak_bytes() + b.buffer_peak_bytes() <= 2 * limit.get());
    for s in [&a, &b] {
        assert_eq!(s.received_events(), s.sent_events() + s.discarded_events());
    }
}
