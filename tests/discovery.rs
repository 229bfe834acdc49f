//! Discovery against real processes: Python and Ruby interpreters, a plain `sleep`,
//! a renamed interpreter that only embeds libpython, and processes that exit while
//! a scan reads them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proc::Proc;
use profpipe::process::{select, Discovery, DiscoveryConfig, ProcessInfo, Rules, Runtime};
use regex::Regex;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// A token unique to this test run, put in command lines so rules can single out
/// our processes on a busy host.
fn token(name: &str) -> String {
    format!("profpipe-test-{name}-{}", std::process::id())
}

/// The Python interpreter binary (resolved) and its prefix.
fn python() -> (PathBuf, PathBuf) {
    let (exe, prefix) = common::proc::python();
    (std::fs::canonicalize(exe).unwrap(), prefix)
}

fn start_python(code: &str) -> Proc {
    Proc::start(Command::new(python().0).args(["-c", code]))
}

fn rules() -> Rules {
    Rules {
        min_age: Duration::ZERO,
        agent_pid: None,
        ..Rules::default()
    }
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap()
}

/// Polls until discovery sees `pid` with a runtime (the interpreter has exec'd and
/// mapped its libraries), or gives up.
fn wait_for_runtime(d: &Discovery, pid: u32) -> Option<ProcessInfo> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let info = d.inspect(pid);
        if info.as_ref().is_some_and(|p| p.runtime.is_some()) || Instant::now() > end {
            return info;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pids(v: &[ProcessInfo]) -> Vec<u32> {
    v.iter().map(|p| p.pid).collect()
}

#[test]
fn finds_python_not_sleep_and_applies_the_rules() {
    let tok = token("py");
    let py = start_python(&format!("import time; time.sleep(60)  # {tok}"));
    let sleeper = Proc::start(Command::new("sleep").arg("60"));
    let mut d = Discovery::new(DiscoveryConfig::default());
    let info = wait_for_runtime(&d, py.pid()).expect("python process visible");
    assert_eq!(info.runtime, Some(Runtime::Python), "{info:?}");
    assert!(!info.embedded_python, "a real interpreter: {info:?}");
    assert!(info.comm.starts_with("python"), "{info:?}");
    assert!(info.cmdline.contains(&tok), "{info:?}");
    assert_eq!(info.ppid, std::process::id());
    assert!(info.age < Duration::from_secs(10));
    assert_eq!(info.container, None, "on the host");

    let procs = d.scan();
    let sleep_info = procs
        .iter()
        .find(|p| p.pid == sleeper.pid())
        .expect("sleep is scanned");
    assert_eq!(sleep_info.runtime, None);

    // min_age 0: found as Python; sleep is never selected.
    let chosen = select(&procs, Runtime::Python, &rules());
    assert!(pids(&chosen).contains(&py.pid()));
    assert!(!pids(&chosen).contains(&sleeper.pid()));
    assert!(!pids(&select(&procs, Runtime::Ruby, &rules())).contains(&sleeper.pid()));

    // min_age 10s (the default): too young.
    let r = Rules {
        min_age: Duration::from_secs(10),
        ..rules()
    };
    assert!(!pids(&select(&procs, Runtime::Python, &r)).contains(&py.pid()));

    // The agent's own children are never profiled.
    let r = Rules {
        agent_pid: Some(std::process::id()),
        ..rules()
    };
    assert!(!pids(&select(&procs, Runtime::Python, &r)).contains(&py.pid()));

    // Allow and deny lists.
    let mine = |r: Rules| pids(&select(&procs, Runtime::Python, &r)).contains(&py.pid());
    assert!(mine(Rules {
        allow_cmdline: vec![re(&tok)],
        ..rules()
    }));
    assert!(!mine(Rules {
        deny_cmdline: vec![re(&tok)],
        ..rules()
    }));
    assert!(mine(Rules {
        allow_comm: vec![re("^python")],
        ..rules()
    }));
    assert!(!mine(Rules {
        allow_comm: vec![re("^no-such-comm$")],
        ..rules()
    }));
    assert!(!mine(Rules {
        deny_comm: vec![re("^python")],
        ..rules()
    }));
    let only_ours = Rules {
        allow_cmdline: vec![re(&tok)],
        ..rules()
    };
    assert_eq!(
        pids(&select(&procs, Runtime::Python, &only_ours)),
        [py.pid()]
    );
}

#[test]
fn finds_ruby_when_installed() {
    let have_ruby = Command::new("sh")
        .args(["-c", "command -v ruby"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_ruby {
        eprintln!("ruby is not installed (apt-get install -y ruby): skipping the Ruby check");
        return;
    }
    let tok = token("rb");
    let rb = Proc::start(Command::new("ruby").args(["-e", &format!("sleep 60 # {tok}")]));
    let d = Discovery::new(DiscoveryConfig::default());
    let info = wait_for_runtime(&d, rb.pid()).expect("ruby process visible");
    assert_eq!(info.runtime, Some(Runtime::Ruby), "{info:?}");
    assert!(!info.embedded_python);
    let procs = vec![info];
    assert_eq!(pids(&select(&procs, Runtime::Ruby, &rules())), [rb.pid()]);
    assert!(select(&procs, Runtime::Python, &rules()).is_empty());
    assert!(
        select(
            &procs,
            Runtime::Ruby,
            &Rules {
                agent_pid: None,
                ..Rules::default()
            }
        )
        .is_empty(),
        "min_age"
    );
}

/// The Envoy case on a real process: an executable that is not called python, maps
/// libpython, and has no python binary mapped. pyenv's interpreter links
/// libpython3.X.so dynamically, so a copy of it under another name is exactly that.
#[test]
fn renamed_interpreter_with_shared_libpython_is_embedded() {
    let (exe, prefix) = python();
    let dir = tempfile::tempdir().unwrap();
    let envoy = dir.path().join("envoy");
    std::fs::copy(&exe, &envoy).unwrap();
    let tok = token("envoy");
    let proc = Proc::start(
        Command::new(&envoy)
            .args(["-c", &format!("import time; time.sleep(60)  # {tok}")])
            .env("PYTHONHOME", &prefix),
    );
    let d = Discovery::new(DiscoveryConfig::default());
    let info = wait_for_runtime(&d, proc.pid());
    match info {
        Some(info) if info.runtime == Some(Runtime::Python) => {
            assert!(info.embedded_python, "{info:?}");
            assert!(
                select(&[info], Runtime::Python, &rules()).is_empty(),
                "skipped as embedded"
            );
        }
        other => eprintln!(
            "{} is statically linked (no libpython mapped): nothing to check ({other:?})",
            exe.display()
        ),
    }
}

#[test]
fn busiest_processes_are_kept_first() {
    let tok = token("busy");
    let idle = start_python(&format!("import time; time.sleep(60)  # {tok}"));
    let busy = start_python(&format!("while True: pass  # {tok}"));
    let mut d = Discovery::new(DiscoveryConfig::default());
    wait_for_runtime(&d, idle.pid());
    wait_for_runtime(&d, busy.pid());
    d.scan();
    // Scan again until the busy loop has been charged CPU time the idle one has not
    // (the kernel counts in ticks; polled, with a generous deadline).
    let procs = common::wait::until_some(
        "the busy process used more CPU than the idle one between two scans",
        Duration::from_secs(10),
        || {
            let procs = d.scan();
            let delta = |pid: u32| {
                procs
                    .iter()
                    .find(|p| p.pid == pid)
                    .map(|p| p.cpu_ticks_delta)
            };
            (delta(busy.pid())? > delta(idle.pid())?).then_some(procs)
        },
    );
    let r = Rules {
        allow_cmdline: vec![re(&tok)],
        max_processes: 1,
        ..rules()
    };
    assert_eq!(pids(&select(&procs, Runtime::Python, &r)), [busy.pid()]);
    let busy_info = procs.iter().find(|p| p.pid == busy.pid()).unwrap();
    assert!(busy_info.cpu_ticks_delta > 0 && busy_info.cpu_ticks_delta <= busy_info.cpu_ticks);
    let r = Rules {
        max_processes: 2,
        ..r
    };
    assert_eq!(
        pids(&select(&procs, Runtime::Python, &r)),
        [busy.pid(), idle.pid()]
    );
}

/// Counts WARN and ERROR events.
struct CountWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn processes_exiting_during_scans_are_never_errors() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(CountWarnings(warnings.clone()));
    tracing::subscriber::with_default(subscriber, || {
        // Two shells forking short-lived processes as fast as they can.
        let churn: Vec<Proc> = (0..2)
            .map(|_| Proc::start(Command::new("sh").args(["-c", "while :; do /bin/true; done"])))
            .collect();
        let mut d = Discovery::new(DiscoveryConfig::default());
        let started = Instant::now();
        for _ in 0..10 {
            let procs = d.scan();
            assert!(procs.iter().any(|p| p.pid == churn[0].pid()));
        }
        eprintln!(
            "10 scans in {:?} while processes came and went",
            started.elapsed()
        );

        // A process that has exited and been reaped, and a zombie: neither is reported.
        let mut gone = Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        assert!(d.inspect(gone_pid).is_none());
        let mut zombie = Command::new("true").spawn().unwrap();
        common::proc::wait_zombie(&zombie);
        assert!(d.inspect(zombie.id()).is_none(), "zombies are left out");
        zombie.wait().unwrap();
        drop(churn);
    });
    assert_eq!(
        warnings.load(Ordering::Relaxed),
        0,
        "vanished processes logged as warnings"
    );
}
