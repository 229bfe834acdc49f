//! The supervisor against real processes: no zombies, no leaked descriptors, no
//! survivors, whatever the children do.
//!
//! Tests that start children take one lock so that the descriptor and zombie counts
//! of the 1,000-cycle test are not disturbed by another test of this binary.

// The lock serializes whole tests, each running its own runtime on its own thread:
// holding it across their awaits is the point.
#![allow(clippy::await_holding_lock)]

mod common;

use std::io::{BufRead, BufReader as StdBufReader};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::proc::{is_dead, our_zombies, stat, wait_exec, PidFd};
use profpipe::process::{
    Backoff, Child, ExitOutcome, Restarter, Signal, SignalError, SpawnError, Spec, Stdout,
    Supervisor, SupervisorConfig,
};
use profpipe::telemetry::Telemetry;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test lock, a supervisor with the default config, and a scratch directory.
fn default_supervisor() -> (MutexGuard<'static, ()>, Supervisor, tempfile::TempDir) {
    let serial = serial();
    let sup = Supervisor::new(SupervisorConfig::default(), &Telemetry::new());
    (serial, sup, tempfile::tempdir().unwrap())
}

fn config(max_children: usize, grace_ms: u64) -> SupervisorConfig {
    SupervisorConfig {
        max_children,
        kill_grace: profpipe::units::DurationStr(Duration::from_millis(grace_ms)),
        ..SupervisorConfig::default()
    }
}

fn sh(script: &str) -> Spec {
    Spec::new("sh").args(["-c", script])
}

fn open_fds() -> usize {
    common::proc::open_fds(std::process::id())
}

/// Whether a process we held a handle on ends (the kernel says so) within 10 s. No
/// handle means it was gone before we could take one.
fn gone(process: &std::io::Result<PidFd>) -> bool {
    process
        .as_ref()
        .map_or(true, |p| p.wait_exit(Duration::from_secs(10)))
}

/// The first line a piped child prints.
async fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    line
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Ok,
    Fail,
    Segv,
    IgnoresTerm,
    BigStderr,
    Cancel,
    Missing,
    Piped,
}

fn kind_of(i: usize) -> Kind {
    if i % 25 == 0 {
        return Kind::BigStderr;
    }
    [
        Kind::Ok,
        Kind::Fail,
        Kind::Segv,
        Kind::IgnoresTerm,
        Kind::Cancel,
        Kind::Missing,
        Kind::Piped,
    ][i % 7]
}

const BIG: u64 = 10 * 1024 * 1024;

/// Spawns `spec` and waits for it.
async fn run(sup: &Supervisor, spec: Spec) -> profpipe::process::ExitReport {
    sup.spawn(spec).await.unwrap().wait().await
}

/// One supervisor cycle of the given kind, with its expectations.
async fn cycle(sup: Supervisor, kind: Kind) {
    let safety = Duration::from_secs(20);
    match kind {
        Kind::Ok => {
            let r = run(&sup, Spec::new("true").deadline(safety)).await;
            assert_eq!(r.outcome, ExitOutcome::Exited(0));
        }
        Kind::Fail => {
            let r = run(&sup, sh("echo oops >&2; exit 3").deadline(safety)).await;
            assert_eq!(r.outcome, ExitOutcome::Exited(3));
            assert_eq!(r.stderr_tail, "oops\n");
            assert_eq!(r.stderr_bytes, 5);
        }
        Kind::Segv => {
            let r = run(&sup, sh("kill -SEGV $$").deadline(safety)).await;
            assert_eq!(r.outcome, ExitOutcome::Signaled(libc::SIGSEGV));
        }
        Kind::IgnoresTerm => {
            let deadline = Duration::from_millis(100);
            let child = sup
                .spawn(sh("trap '' TERM; sleep 100").deadline(deadline))
                .await
                .unwrap();
            let r = child.wait().await;
            assert_eq!(r.outcome, ExitOutcome::TimedOut);
            assert!(r.runtime >= deadline, "{:?}", r.runtime);
        }
        Kind::BigStderr => {
            let script = format!("head -c {BIG} /dev/zero >&2");
            let r = run(&sup, sh(&script).deadline(safety)).await;
            assert_eq!(r.outcome, ExitOutcome::Exited(0));
            assert_eq!(r.stderr_bytes, BIG);
            assert_eq!(r.stderr_tail.len(), 64 * 1024, "the tail stays bounded");
        }
        Kind::Cancel => {
            let child = sup.spawn(Spec::new("sleep").arg("100")).await.unwrap();
            // Cancel a child that is really running its program.
            assert!(wait_exec(child.pid(), "sleep").await);
            drop(child);
        }
        Kind::Missing => {
            let err = sup
                .spawn(Spec::new("/nonexistent/profpipe-no-such-tool"))
                .await
                .unwrap_err();
            assert!(matches!(err, SpawnError::NotFound { .. }), "{err:?}");
        }
        Kind::Piped => {
            let mut child = sup
                .spawn(
                    sh("echo hello; echo warn >&2")
                        .stdout(Stdout::Piped)
                        .deadline(safety),
                )
                .await
                .unwrap();
            assert_eq!(first_line(&mut child).await, "hello\n");
            let r = child.wait().await;
            assert_eq!(r.outcome, ExitOutcome::Exited(0));
            assert_eq!(r.stderr_tail, "warn\n");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_cycles_leave_no_zombies_and_no_descriptors() {
    let _serial = serial();
    let telemetry = Telemetry::new();
    let sup = Supervisor::new(config(16, 200), &telemetry);

    // Warm up: the first spawn starts the spawner thread and registers lazily
    // created runtime resources.
    for i in 0..8 {
        cycle(sup.clone(), kind_of(i)).await;
    }
    sup.idle().await;
    let fds_before = open_fds();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut counts = std::collections::HashMap::new();
    for i in 0..1000 {
        let kind = kind_of(i);
        *counts.entry(kind).or_insert(0u64) += 1;
        tasks.spawn(cycle(sup.clone(), kind));
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("cycle failed");
    }
    tokio::time::timeout(Duration::from_secs(10), sup.idle())
        .await
        .expect("all children reaped");
    let elapsed = started.elapsed();
    let fds_after = open_fds();
    let zombies = our_zombies();
    eprintln!(
        "1000 cycles in {elapsed:?}; open fds before {fds_before}, after {fds_after}; zombies {zombies:?}; kinds {counts:?}"
    );
    assert_eq!(sup.alive(), 0);
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
    assert_eq!(fds_after, fds_before, "descriptors leaked");

    let metrics = telemetry.render();
    let expect = |line: String| assert!(metrics.contains(&line), "missing {line:?} in\n{metrics}");
    expect("profpipe_process_children_alive 0".into());
    let n = |k| counts[&k] + (0..8).filter(|&i| kind_of(i) == k).count() as u64;
    expect(format!(
        "profpipe_process_children_exits_total{{program=\"sh\",reason=\"timeout\"}} {}",
        n(Kind::IgnoresTerm)
    ));
    expect(format!(
        "profpipe_process_children_exits_total{{program=\"sleep\",reason=\"cancelled\"}} {}",
        n(Kind::Cancel)
    ));
    expect(format!(
        "profpipe_process_children_exits_total{{program=\"sh\",reason=\"signal\"}} {}",
        n(Kind::Segv)
    ));
    expect(format!(
        "profpipe_process_spawn_failures_total{{program=\"profpipe-no-such-tool\",reason=\"not_found\"}} {}",
        n(Kind::Missing)
    ));
    expect(format!(
        "profpipe_process_children_started_total{{program=\"true\"}} {}",
        n(Kind::Ok)
    ));
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let _serial = serial();
    let sup = Supervisor::new(config(4, 200), &Telemetry::new());
    // Both the shell and its background grandchild ignore SIGTERM.
    let mut child = sup
        .spawn(
            sh("trap '' TERM; sleep 100 & echo $!; wait")
                .stdout(Stdout::Piped)
                .deadline(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let pid: u32 = first_line(&mut child).await.trim().parse().unwrap();
    let grandchild = PidFd::open(pid);
    assert!(wait_exec(pid, "sleep").await, "the grandchild runs sleep");
    let report = child.wait().await;
    assert_eq!(report.outcome, ExitOutcome::TimedOut);
    assert!(
        report.runtime >= Duration::from_millis(500),
        "TERM ignored, KILL after grace"
    );
    assert!(gone(&grandchild), "grandchild survived");
    assert!(our_zombies().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_child_that_exits_normally() {
    let _serial = serial();
    let sup = Supervisor::new(config(4, 200), &Telemetry::new());
    let mut child = sup
        .spawn(sh("sleep 100 & echo $!").stdout(Stdout::Piped))
        .await
        .unwrap();
    let pid: u32 = first_line(&mut child).await.trim().parse().unwrap();
    let grandchild = PidFd::open(pid);
    // The grandchild holds stdout and stderr open: wait() must not depend on them.
    let report = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("wait() returned");
    assert_eq!(report.outcome, ExitOutcome::Exited(0));
    assert!(gone(&grandchild), "grandchild survived");
    // Once the group is gone, reading the rest of stdout ends at once: nothing
    // else holds the pipe. (Checked through a fresh child, since wait() consumed
    // the handle.)
    let mut child = sup
        .spawn(sh("sleep 100 & echo $!").stdout(Stdout::Piped))
        .await
        .unwrap();
    let mut out = String::new();
    let read = child.stdout().unwrap().read_to_string(&mut out);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("stdout reached EOF: the leftover group was killed")
        .unwrap();
    assert_eq!(child.wait().await.outcome, ExitOutcome::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_signal_and_already_exited() {
    let _serial = serial();
    let sup = Supervisor::new(config(4, 200), &Telemetry::new());

    let child = sup.spawn(Spec::new("sleep").arg("100")).await.unwrap();
    let report = child.terminate().await;
    assert_eq!(report.outcome, ExitOutcome::Cancelled);
    assert!(report.runtime < Duration::from_secs(2));

    let child = sup.spawn(Spec::new("sleep").arg("100")).await.unwrap();
    child.signal(Signal::SIGINT).unwrap();
    assert_eq!(
        child.wait().await.outcome,
        ExitOutcome::Signaled(libc::SIGINT)
    );

    let child = sup.spawn(Spec::new("true")).await.unwrap();
    sup.idle().await; // reaped in the background, handle still held
    assert!(matches!(
        child.signal(Signal::SIGTERM),
        Err(SignalError::Exited { .. })
    ));
    assert_eq!(child.wait().await.outcome, ExitOutcome::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_errors_are_typed() {
    let (_serial, sup, dir) = default_supervisor();
    let not_executable = dir.path().join("tool");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let err = sup.spawn(Spec::new(&not_executable)).await.unwrap_err();
    assert!(
        matches!(err, SpawnError::PermissionDenied { .. }),
        "{err:?}"
    );
    let err = sup
        .spawn(Spec::new("profpipe-not-on-path"))
        .await
        .unwrap_err();
    assert!(matches!(err, SpawnError::NotFound { .. }), "{err:?}");
    let err = sup
        .spawn(Spec::new("true").stdout(Stdout::File(dir.path().join("no/such/dir/out"))))
        .await
        .unwrap_err();
    assert!(matches!(err, SpawnError::Stdout { .. }), "{err:?}");
    assert_eq!(sup.alive(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_to_files_env_and_no_core_dumps() {
    let (_serial, sup, dir) = default_supervisor();
    let out = dir.path().join("out.txt");
    let spec = |msg: &str, stdout: Stdout| {
        sh("echo \"$MSG $(ulimit -c)\"; cat")
            .env("MSG", msg)
            .stdout(stdout)
    };
    let r = run(&sup, spec("first", Stdout::File(out.clone()))).await;
    assert_eq!(
        r.outcome,
        ExitOutcome::Exited(0),
        "stdin is /dev/null: cat ends at once"
    );
    run(&sup, spec("second", Stdout::Append(out.clone()))).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "first 0\nsecond 0\n"
    );
    run(&sup, spec("third", Stdout::File(out.clone()))).await;
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "third 0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_makes_callers_wait() {
    let _serial = serial();
    let sup = Supervisor::new(config(2, 200), &Telemetry::new());
    let a = sup.spawn(Spec::new("sleep").arg("100")).await.unwrap();
    let b = sup.spawn(Spec::new("sleep").arg("100")).await.unwrap();
    assert_eq!(sup.alive(), 2);
    // Both slots are taken by children that never end on their own: a third caller
    // waits however long it is given.
    let third =
        tokio::time::timeout(Duration::from_millis(150), sup.spawn(Spec::new("true"))).await;
    assert!(third.is_err(), "a third child started above the cap");
    // A waiting caller gets the slot that `a` frees, and not before.
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let (sup, released) = (sup.clone(), released.clone());
        tokio::spawn(async move {
            let c = sup.spawn(Spec::new("true")).await.unwrap();
            assert!(
                released.load(std::sync::atomic::Ordering::SeqCst),
                "started before a slot was freed"
            );
            c
        })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    released.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(a.terminate().await.outcome, ExitOutcome::Cancelled);
    let c = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiting caller got the freed slot")
        .unwrap();
    assert!(c.wait().await.outcome.success());
    assert_eq!(b.terminate().await.outcome, ExitOutcome::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_terminates_and_reaps_everything() {
    let _serial = serial();
    let sup = Supervisor::new(config(8, 300), &Telemetry::new());
    let mut children = Vec::new();
    for _ in 0..5 {
        let mut child = sup
            .spawn(sh("trap '' TERM; echo ready; sleep 100").stdout(Stdout::Piped))
            .await
            .unwrap();
        // The shell says when its trap is set: SIGTERM is ignored from then on.
        assert_eq!(first_line(&mut child).await, "ready\n");
        children.push(child);
    }
    children.push(sup.spawn(Spec::new("sleep").arg("100")).await.unwrap());
    let pids: Vec<u32> = children.iter().map(|c| c.pid()).collect();
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), sup.shutdown())
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "TERM-ignoring children got the grace"
    );
    assert_eq!(sup.alive(), 0);
    for pid in pids {
        assert!(stat(pid).is_none(), "{pid} still exists");
    }
    for child in children {
        assert_eq!(child.wait().await.outcome, ExitOutcome::Cancelled);
    }
    assert!(matches!(
        sup.spawn(Spec::new("true")).await,
        Err(SpawnError::ShuttingDown)
    ));
    sup.shutdown().await; // idempotent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarter_backs_off_and_counts() {
    let _serial = serial();
    let telemetry = Telemetry::new();
    let sup = Supervisor::new(SupervisorConfig::default(), &telemetry);
    let backoff = Backoff {
        initial: profpipe::units::DurationStr(Duration::from_millis(100)),
        jitter: 0.0,
        ..Backoff::default()
    };
    let mut restarter = Restarter::new(&sup, &backoff);
    let mut starts = Vec::new();
    for _ in 0..3 {
        let child = restarter.start(Spec::new("false")).await.unwrap();
        starts.push(Instant::now());
        let report = child.wait().await;
        assert_eq!(report.outcome, ExitOutcome::Exited(1));
        restarter.exited(&report);
    }
    let gap1 = starts[1] - starts[0];
    let gap2 = starts[2] - starts[1];
    assert!(
        gap1 >= Duration::from_millis(100) && gap2 >= Duration::from_millis(200),
        "{gap1:?} {gap2:?}"
    );
    assert!(telemetry
        .render()
        .contains("profpipe_process_children_restarted_total{program=\"false\"} 2"));

    // Shutdown during the backoff wait ends it: the start is polled into its wait
    // (400 ms now), then the supervisor shuts down.
    let t = Instant::now();
    let mut start = std::pin::pin!(restarter.start(Spec::new("false")));
    tokio::select! {
        biased;
        r = &mut start => panic!("start did not wait for its backoff (ok: {})", r.is_ok()),
        _ = std::future::ready(()) => {}
    }
    let (_, result) = tokio::join!(sup.shutdown(), start);
    assert!(
        matches!(result, Err(SpawnError::ShuttingDown)),
        "{result:?}"
    );
    assert!(t.elapsed() < Duration::from_millis(350));
}

/// PDEATHSIG is per thread: a child forked by a thread that exits is killed even
/// though the process lives on. This is the hazard the spawner thread avoids.
#[test]
fn control_pdeathsig_follows_the_forking_thread() {
    let _serial = serial();
    use std::os::unix::process::CommandExt;
    let mut child = std::thread::spawn(|| {
        let mut cmd = Command::new("sleep");
        cmd.arg("100");
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    })
    .join()
    .unwrap();
    // The forking thread has exited: the child was killed.
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

/// Children spawned from a blocking-pool thread survive that thread's retirement,
/// because the fork happens on the supervisor's spawner thread.
#[test]
fn child_survives_the_spawning_thread_going_idle() {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_keep_alive(Duration::from_millis(50))
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::new(SupervisorConfig::default(), &Telemetry::new());
        let handle = tokio::runtime::Handle::current();
        let sup2 = sup.clone();
        let (child, tid) = tokio::task::spawn_blocking(move || {
            let tid = unsafe { libc::gettid() };
            (
                handle.block_on(sup2.spawn(Spec::new("sleep").arg("100"))),
                tid,
            )
        })
        .await
        .unwrap();
        let child = child.unwrap();
        let pidfd = PidFd::open(child.pid()).unwrap();
        // The blocking thread retires after 50 ms idle. Once the kernel has released
        // it, any PDEATHSIG tied to it has been sent.
        common::wait::until_async(
            "the spawning thread retired",
            Duration::from_secs(10),
            || !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists(),
        )
        .await;
        assert!(
            !pidfd.wait_exit(Duration::from_millis(500)),
            "child died with the spawning thread"
        );
        assert!(!is_dead(child.pid(), "sleep"));
        let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .collect();
        assert!(
            threads.iter().any(|c| c.trim() == "profpipe-spawn"),
            "{threads:?}"
        );
        assert_eq!(child.terminate().await.outcome, ExitOutcome::Cancelled);
    });
}

/// Set in the re-executed test binary: it then plays the agent.
const AGENT_ROLE: &str = "PROFPIPE_TEST_PDEATHSIG_AGENT";

/// The "agent" of `child_dies_when_the_agent_is_killed`, in a process of its own:
/// starts a child through the supervisor, prints its pid, and lives until stdin
/// closes (so it never outlives the test) or it is killed.
fn play_the_agent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = Supervisor::new(SupervisorConfig::default(), &Telemetry::new());
        let child = sup.spawn(Spec::new("sleep").arg("100")).await.unwrap();
        println!("PDEATHSIG_CHILD_PID={}", child.pid());
        use std::io::{Read, Write};
        std::io::stdout().flush().unwrap();
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0u8; 1])).await;
        drop(child);
    });
}

/// Kills and reaps the helper "agent" however the test ends.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent is SIGKILLed (no destructor, no shutdown code runs): its child dies too,
/// through PDEATHSIG set by the spawner thread. The agent is this test binary run
/// again, filtered to this one test, with `AGENT_ROLE` set.
#[test]
fn child_dies_when_the_agent_is_killed() {
    if std::env::var_os(AGENT_ROLE).is_some() {
        return play_the_agent();
    }
    let _serial = serial();
    let mut agent = Agent(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_dies_when_the_agent_is_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(AGENT_ROLE, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = StdBufReader::new(agent.0.stdout.take().unwrap()).lines();
    let pid: u32 = loop {
        let line = lines.next().expect("the agent printed the pid").unwrap();
        // libtest prints "test name ... " before the agent's own output.
        if let Some((_, p)) = line.split_once("PDEATHSIG_CHILD_PID=") {
            break p.trim().parse().unwrap();
        }
    };
    // The supervisor's spawn returns once the child has exec'd.
    let (_, ppid, comm) = stat(pid).expect("the child exists");
    assert_eq!((ppid, comm.as_str()), (agent.0.id(), "sleep"));
    let child = PidFd::open(pid).unwrap();
    assert!(!child.exited(), "the child lives while the agent lives");
    drop(agent); // SIGKILL, then reaped
    assert!(
        child.wait_exit(Duration::from_secs(10)),
        "the child outlived the SIGKILLed agent"
    );
}
