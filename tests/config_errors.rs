//! Config loading against fixture files.
//!
//! Every `tests/data/config/NAME.toml` is loaded with the test kinds'
//! registry (`profpipe::config::test_kinds`, shared with the loader's unit tests) and
//! its result compared with `NAME.out`: the errors exactly as printed
//! (`file:line:column: message`, one per line), or for a config that loads, a
//! summary of the typed config starting with `ok`.
//!
//! `PROFPIPE_BLESS=1 cargo test --test config_errors` rewrites the `.out` files that
//! differ. A fixture without a `.out` file fails even when blessing: create it
//! (empty) to say that the fixture is meant to be there, then bless.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use profpipe::config::test_kinds::registry;
use profpipe::config::{load_file, load_str, load_str_with_env, Config};

// ---------------------------------------------------------------------------
// Golden files.

const FIXTURES: &str = "tests/data/config";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What `NAME.out` holds for a config that loads.
fn summary(config: &Config) -> String {
    let mut s = String::from("ok\n");
    let a = &config.agent;
    let _ = writeln!(
        s,
        "agent memory_limit={} shutdown_timeout={} hostname={}",
        a.memory_limit,
        a.shutdown_timeout,
        a.hostname.as_deref().unwrap_or("-")
    );
    let listen = config.telemetry.listen.map(|l| l.to_string());
    let _ = writeln!(s, "telemetry listen={}", listen.as_deref().unwrap_or("-"));
    for c in &config.sources {
        let _ = writeln!(
            s,
            "source {} type={} finite={}",
            c.id,
            c.type_name,
            c.config.is_finite()
        );
    }
    let inputs = |ids: &[profpipe::event::ComponentId]| {
        ids.iter().map(|i| &**i).collect::<Vec<_>>().join(",")
    };
    // Transforms and sinks print alike: both read inputs through a buffer.
    let transforms = config
        .transforms
        .iter()
        .map(|c| ("transform", &c.id, c.type_name, &c.inputs, &c.buffer));
    let sinks = config
        .sinks
        .iter()
        .map(|c| ("sink", &c.id, c.type_name, &c.inputs, &c.buffer));
    for (kind, id, type_name, ids, buffer) in transforms.chain(sinks) {
        let _ = writeln!(
            s,
            "{kind} {id} type={type_name} inputs={} buffer={} {:?}",
            inputs(ids),
            buffer.max_bytes,
            buffer.when_full
        );
    }
    s
}

/// Loads a fixture under the name `tests/data/config/NAME.toml`, so that the
/// expected output does not depend on where the checkout is.
fn render(name: &Path, text: &str, registry: &profpipe::config::Registry) -> String {
    match load_str(name, text, registry) {
        Ok(config) => summary(&config),
        Err(errors) => format!("{errors}\n"),
    }
}

#[test]
fn fixtures() {
    check_fixtures(FIXTURES, &registry(), 10);
}

/// `tests/data/config/sinks/`: the real sinks' keys and messages, loaded with
/// the agent's own registry (nothing is started: loading does no I/O).
#[test]
fn real_sink_fixtures() {
    check_fixtures(SINK_FIXTURES, &profpipe::registry::registry(), 4);
}

const SINK_FIXTURES: &str = "tests/data/config/sinks";

fn check_fixtures(fixtures: &str, registry: &profpipe::config::Registry, at_least: usize) {
    let bless = std::env::var_os("PROFPIPE_BLESS").is_some_and(|v| v == "1");
    let dir = manifest_dir().join(fixtures);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    assert!(
        names.len() >= at_least,
        "fixtures missing from {}",
        dir.display()
    );

    let mut failures = Vec::new();
    for path in &names {
        let file = path.file_name().unwrap();
        let shown = Path::new(fixtures).join(file);
        let text = std::fs::read_to_string(path).unwrap();
        let actual = render(&shown, &text, registry);
        let out = path.with_extension("out");
        let shown_out = shown.with_extension("out");
        let Ok(expected) = std::fs::read_to_string(&out) else {
            failures.push(format!(
                "{}: no expected output; create it (empty) and run with PROFPIPE_BLESS=1\nactual:\n{actual}",
                shown_out.display()
            ));
            continue;
        };
        if expected == actual {
            continue;
        }
        if bless {
            std::fs::write(&out, &actual).unwrap();
            eprintln!("blessed {}", shown_out.display());
            continue;
        }
        failures.push(diff(&shown_out, &expected, &actual));
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ (PROFPIPE_BLESS=1 rewrites them):\n\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

/// Line-by-line differences, each with its line in the expected file.
fn diff(out: &Path, expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut s = String::new();
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            let _ = writeln!(s, "{}:{}:", out.display(), i + 1);
            if let Some(x) = x {
                let _ = writeln!(s, "  - {x}");
            }
            if let Some(y) = y {
                let _ = writeln!(s, "  + {y}");
            }
        }
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        let _ = writeln!(s, "{}: differs in the final newline", out.display());
    }
    s
}

// ---------------------------------------------------------------------------
// Checks written out here, independent of blessing.

#[test]
fn many_errors_in_one_load_each_at_its_place() {
    let text = r#"[agent]
memory_limit = "4MiB"
shutdown_timeot = "5s"

[sources.cpu]
type = "perf"
frequncy = 99
window = "1 fortnight"
inputs = ["x"]

[sources.py]
type = "py_sy"

[transforms.fold]
type = "fold"
inputs = ["cpu", "pyy", "out"]
buffer = { max_bytes = "16MiB", when_ful = "block" }

[sink.typo]
type = "file"

[sinks.out]
type = "kafka"
inputs = []
brokers = "kafka-1"
topic = ""
"#;
    let errors = load_str(Path::new("many.toml"), text, &registry()).unwrap_err();
    let got: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let expected = [
        "many.toml:3:1: [agent]: unknown field `shutdown_timeot`, did you mean `shutdown_timeout`?",
        "many.toml:7:1: source `cpu`: unknown field `frequncy`",
        "many.toml:8:10: source `cpu`: `window`: invalid duration \"1 fortnight\"",
        "many.toml:9:1: source `cpu`: a source has no `inputs`; it is where events start",
        "many.toml:12:8: unknown source type `py_sy`, did you mean `py_spy`?",
        "many.toml:14:1: transform `fold` is not read by any transform or sink",
        "many.toml:16:18: transform `fold`: unknown input `pyy`, did you mean `py`?",
        "many.toml:16:25: transform `fold`: input `out` is a sink; only sources and transforms can be inputs",
        "many.toml:17:24: transform `fold`: `buffer.max_bytes` (16.0 MiB) is larger than [agent] memory_limit (4.0 MiB), which caps all buffers together",
        "many.toml:17:33: transform `fold`: unknown field `buffer.when_ful`, did you mean `when_full`?",
        "many.toml:19:2: unknown table `sink`, did you mean `sinks`?",
        "many.toml:24:10: sink `out` has no inputs",
        "many.toml:25:11: sink `out`: `brokers`: broker 1 (`kafka-1`) has no port",
        "many.toml:26:9: sink `out`: `topic`: must not be empty",
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (g, x) in got.iter().zip(expected) {
        assert!(g.starts_with(x), "got      {g:?}\nexpected {x:?}");
    }
}

#[test]
fn valid_config_yields_the_typed_pipeline() {
    let text = r#"
[agent]
memory_limit = "128MiB"
hostname = "box-1"

[sources.host_cpu]
type = "perf"
frequency = 99
window = "10s"

[sources.replay]
type = "file"
path = "/var/tmp/perf.txt"
mode = "once"

[transforms.fold]
type = "fold"
inputs = ["host_cpu", "replay"]

[transforms.quiet]
type = "symbol_filter"
inputs = ["fold"]
drop_frames = ['^__pfx_', '^\[unknown\]$']
buffer.when_full = "drop_newest"

[sinks.archive]
type = "file"
inputs = ["quiet"]
path = "/var/lib/profpipe"
formats = ["collapsed", "flamegraph"]

[sinks.analytics]
type = "kafka"
inputs = ["quiet", "fold"]
brokers = "kafka-1:9092,kafka-2:9092"
topic = "profiles"
buffer = { max_bytes = "64MiB", when_full = "block" }
"#;
    let config = load_str(Path::new("<embedded default>"), text, &registry()).unwrap();
    assert_eq!(
        summary(&config),
        "ok
agent memory_limit=128.0 MiB shutdown_timeout=30s hostname=box-1
telemetry listen=-
source host_cpu type=perf finite=false
source replay type=file finite=true
transform fold type=fold inputs=host_cpu,replay buffer=8.0 MiB Block
transform quiet type=symbol_filter inputs=fold buffer=8.0 MiB DropNewest
sink archive type=file inputs=quiet buffer=8.0 MiB Block
sink analytics type=kafka inputs=quiet,fold buffer=64.0 MiB Block
"
    );
}

#[test]
fn unreadable_file_is_one_error() {
    let path = manifest_dir().join(FIXTURES).join("does-not-exist.toml");
    let errors = load_file(&path, &registry()).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    let e = &errors.0[0];
    assert_eq!((e.file.as_path(), e.line, e.column), (path.as_path(), 0, 0));
    assert!(e.message.starts_with("cannot read: "), "{}", e.message);
}

#[test]
fn load_file_reports_the_path_it_was_given() {
    let path = manifest_dir().join(FIXTURES).join("unknown_type.toml");
    let errors = load_file(&path, &registry()).unwrap_err();
    assert!(errors.0.iter().all(|e| e.file == path));
    assert!(errors
        .to_string()
        .starts_with(&format!("{}:", path.display())));
}

/// `${NAME}` from a given environment: replaced before the fields are read, and the
/// values never shown in errors.
#[test]
fn env_vars_are_substituted_and_never_shown() {
    let env = |name: &str| match name {
        "HOST" => Ok("box-7".to_string()),
        "MEM" => Ok("96MiB".to_string()),
        "BROKERS" => Ok("s3cr3t-broker".to_string()),
        _ => Err(std::env::VarError::NotPresent),
    };
    let valid = r#"
[agent]
memory_limit = "${MEM}"
hostname = "${HOST}"

[sources.cpu]
type = "perf"

[sinks.out]
type = "kafka"
inputs = ["cpu"]
brokers = "${HOST}:9092"
topic = "p-$${HOST}"
"#;
    let config = load_str_with_env(Path::new("env.toml"), valid, &registry(), &env).unwrap();
    assert!(
        summary(&config)
            .starts_with("ok\nagent memory_limit=96.0 MiB shutdown_timeout=30s hostname=box-7\n"),
        "{}",
        summary(&config)
    );

    let invalid = r#"[sources.cpu]
type = "perf"
window = "${WINDOW}"

[sinks.out]
type = "kafka"
inputs = ["cpu"]
brokers = "${BROKERS}"
topic = "${TOPIC}"
"#;
    let errors = load_str_with_env(Path::new("env.toml"), invalid, &registry(), &env)
        .unwrap_err()
        .to_string();
    assert_eq!(
        errors,
        "env.toml:3:11: environment variable `WINDOW` is not set (used as `${WINDOW}`)
env.toml:8:11: sink `out`: `brokers`: broker 1 (`${BROKERS}`) has no port
env.toml:9:10: environment variable `TOPIC` is not set (used as `${TOPIC}`)"
    );
    assert!(!errors.contains("s3cr3t"));
}

/// `load_str` reads the process environment.
#[test]
fn env_vars_come_from_the_process_environment() {
    let name = "PROFPIPE_CONFIG_ERRORS_TEST_HOSTNAME";
    std::env::set_var(name, "from-env");
    let text = format!("[agent]\nhostname = \"${{{name}}}\"\n[sources.cpu]\ntype = \"perf\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"cpu\"]\npath = \"/tmp/x\"\n");
    let config = load_str(Path::new("env.toml"), &text, &registry()).unwrap();
    assert_eq!(config.agent.hostname.as_deref(), Some("from-env"));
    std::env::remove_var(name);
    let errors = load_str(Path::new("env.toml"), &text, &registry()).unwrap_err();
    assert_eq!(
        errors.to_string(),
        format!("env.toml:2:13: environment variable `{name}` is not set (used as `${{{name}}}`)")
    );
}
