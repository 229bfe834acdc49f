//! gProfiler's application identifiers: what a process *is*, from its command
//! line, as the `appid:` frame puts it (`gprofiler/metadata/application_identifiers.py`).
//!
//! | command line | app id |
//! |---|---|
//! | `python3 -u x.py --token S` | `python: x.py (/srv/x.py)` |
//! | `python3 -m mod ...` | `python: -m mod` |
//! | `gunicorn -w 4 app.wsgi:application` | `gunicorn: app.wsgi:application (/srv/app/wsgi.py)` |
//! | `gunicorn: worker [app:app]` (setproctitle) | `gunicorn: app:app (/srv/app.py)` |
//! | `uvicorn main:app --port 80` | `uvicorn: main:app (/srv/main.py)` |
//! | `uwsgi -w app.wsgi` / `uwsgi --ini x.ini` | `uwsgi: app.wsgi (/srv/app/wsgi.py)` / `uwsgi: x.ini (...)` |
//! | `celery -A proj worker` | `celery: proj (/srv/proj.py)` |
//! | `python -m pyspark.daemon` | `pyspark` |
//! | `node --require r app.js` | `nodejs: app.js (/srv/app.js)` |
//! | `ruby x.rb` | `ruby: x.rb (/srv/x.rb)` |
//! | `java -Xmx1g -jar x.jar ...` / `java -cp c com.acme.Main` | `java: x.jar` / `java: com.acme.Main` |
//!
//! Command lines hold secrets (`--password`, tokens, URLs with credentials): only
//! the argument that names the application is ever kept, never one after it, and
//! a Python app spec stops before any `(` (a factory call's arguments). Relative
//! paths are joined to the process's working directory (lexically; `..` and `.`
//! resolved). Java's main class comes from the command line, not from an attach
//! (gProfiler asks the JVM with `jcmd VM.command_line`: it gives the same first
//! word). gProfiler's `--app-id-args-filter` (extra JVM arguments by regex) is not
//! offered: it is the path by which a secret would reach the profile.

use std::path::Path;

/// A command line, as `/proc/PID/cmdline` holds it, and the working directory.
pub struct Cmdline<'a> {
    pub args: &'a [String],
    /// The process's working directory, when known, for relative paths.
    pub cwd: Option<&'a str>,
}

/// The app id of a process; None when nothing identifies it.
/// `read_file` reads a file of the process (uWSGI's ini), by absolute path.
pub fn app_id(c: &Cmdline<'_>, read_file: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let arg0 = c.args.first()?;
    gunicorn_title(c)
        .or_else(|| server(c, "gunicorn", &[]))
        .or_else(|| server(c, "uvicorn", &["--factory"]))
        .or_else(|| uwsgi(c, read_file))
        .or_else(|| celery(c))
        .or_else(|| (is_python_m(c.args, "pyspark.daemon")).then(|| "pyspark".to_string()))
        .or_else(|| python(c))
        .or_else(|| script(c, "node", &[".js", ".mjs", ".cjs"], "nodejs"))
        .or_else(|| script(c, "ruby", &[".rb"], "ruby"))
        .or_else(|| (basename(arg0) == "java").then(|| java(c.args)).flatten())
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// `python`, `python3`, `python3.11` (gProfiler's `^python([23](\.\d{1,2})?)?$`).
fn is_python_bin(p: &str) -> bool {
    let Some(rest) = basename(p).strip_prefix("python") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let (major, minor) = rest
        .split_once('.')
        .map_or((rest, None), |(a, b)| (a, Some(b)));
    matches!(major, "2" | "3")
        && minor.is_none_or(|m| (1..=2).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_digit()))
}

fn is_python_m(args: &[String], module: &str) -> bool {
    args.len() >= 3 && is_python_bin(&args[0]) && args[1] == "-m" && args[2] == module
}

/// argv[0] or argv[1] (`python /usr/bin/gunicorn ...`) is `name`.
fn runs(args: &[String], name: &str) -> bool {
    args.iter().take(2).any(|a| basename(a) == name)
}

/// The value of option `name`: `name V`, `name=V` (with `equals`) or `nameV` (with
/// `prefix`).
fn option<'a>(args: &'a [String], name: &str, equals: bool, prefix: bool) -> Option<&'a str> {
    if let Some(i) = args.iter().position(|a| a == name) {
        return args.get(i + 1).map(String::as_str);
    }
    args.iter().find_map(|a| {
        if equals {
            if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
        if prefix && a.len() > name.len() {
            return a.strip_prefix(name);
        }
        None
    })
}

/// An app spec without a factory call's arguments: `app:create_app('k')` →
/// `app:create_app`.
fn spec_only(spec: &str) -> &str {
    spec.split('(').next().unwrap_or(spec).trim()
}

/// `a.b` → `<cwd>/a/b.py`; `x.py` → `<cwd>/x.py`.
fn module_path(c: &Cmdline<'_>, module: &str) -> String {
    if module == "unknown app name" {
        return module.to_string();
    }
    let file = if module.ends_with(".py") {
        module.to_string()
    } else {
        format!("{}.py", module.replace('.', "/"))
    };
    absolute(c, &file)
}

/// `file` joined to the working directory and normalized lexically.
pub fn absolute(c: &Cmdline<'_>, file: &str) -> String {
    let joined = match (file.starts_with('/'), c.cwd) {
        (true, _) | (false, None) => file.to_string(),
        (false, Some(cwd)) => format!("{}/{file}", cwd.trim_end_matches('/')),
    };
    if !joined.starts_with('/') {
        return joined;
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// setproctitle'd gunicorn: one argument, `gunicorn: worker [app.wsgi:app]`.
fn gunicorn_title(c: &Cmdline<'_>) -> Option<String> {
    let first = c.args.first()?;
    let rest = first.strip_prefix("gunicorn: ")?;
    if c.args.iter().filter(|a| !a.is_empty()).count() != 1 {
        return None;
    }
    let inner = rest
        .strip_prefix("master [")
        .or_else(|| rest.strip_prefix("worker ["))?
        .strip_suffix(']')?;
    if inner.contains(']') {
        return None;
    }
    Some(server_id("gunicorn", c, inner))
}

/// gunicorn / uvicorn: the first argument holding `:` that is not an option's value.
fn server(c: &Cmdline<'_>, name: &str, flags_before_spec: &[&str]) -> Option<String> {
    if !runs(c.args, name) {
        return None;
    }
    let spec = c
        .args
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, a)| {
            let prev = &c.args[i - 1];
            a.contains(':')
                && (!prev.starts_with('-') || flags_before_spec.contains(&prev.as_str()))
        })
        .map_or("unknown app name", |(_, a)| a.as_str());
    Some(server_id(name, c, spec))
}

fn server_id(name: &str, c: &Cmdline<'_>, spec: &str) -> String {
    let spec = spec_only(spec);
    let file = spec.split(':').next().unwrap_or(spec);
    format!("{name}: {spec} ({})", module_path(c, file))
}

fn uwsgi(c: &Cmdline<'_>, read_file: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if basename(c.args.first()?) != "uwsgi" {
        return None;
    }
    if let Some(w) =
        option(c.args, "-w", false, false).or_else(|| option(c.args, "--wsgi-file", true, false))
    {
        return Some(format!("uwsgi: {w} ({})", module_path(c, w)));
    }
    let ini = ["--ini", "--ini-paste", "--ini-paste-logged"]
        .iter()
        .find_map(|o| option(c.args, o, true, false))
        .or_else(|| {
            let inis: Vec<&String> = c.args.iter().filter(|a| a.ends_with(".ini")).collect();
            (inis.len() == 1).then(|| inis[0].as_str())
        });
    let Some(ini) = ini else {
        return Some("uwsgi: ini file / wsgi module not found".into());
    };
    let module = read_file(&absolute(c, ini)).and_then(|text| ini_module(&text));
    Some(match module {
        Some(m) => format!("uwsgi: {ini} ({})", module_path(c, &m)),
        None => format!("uwsgi: {ini}"),
    })
}

/// `module` in the `[uwsgi]` section of an ini file.
fn ini_module(text: &str) -> Option<String> {
    let mut in_uwsgi = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_uwsgi = line == "[uwsgi]";
        } else if in_uwsgi {
            if let Some((k, v)) = line.split_once(['=', ':']) {
                if k.trim() == "module" {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

fn celery(c: &Cmdline<'_>) -> Option<String> {
    if !runs(c.args, "celery") && !is_python_m(c.args, "celery") {
        return None;
    }
    if let Some(app) =
        option(c.args, "-A", false, true).or_else(|| option(c.args, "--app", true, false))
    {
        return Some(format!("celery: {app} ({})", module_path(c, app)));
    }
    let queue =
        option(c.args, "-Q", false, true).or_else(|| option(c.args, "--queues", true, false))?;
    Some(format!("celery queue: {queue} ({})", c.cwd.unwrap_or("")))
}

/// Python options that take a value as the next argument.
const PYTHON_VALUE_OPTIONS: &[&str] = &["-W", "-X", "-c", "--check-hash-based-pycs"];

/// `python [options] x.py` or `python [options] -m module`: only the options
/// before the script are read (what follows belongs to the script).
fn python(c: &Cmdline<'_>) -> Option<String> {
    if !is_python_bin(c.args.first()?) {
        return None;
    }
    let mut args = c.args.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "-m" {
            return args.next().map(|m| format!("python: -m {m}"));
        }
        if a == "-c" || a == "-" {
            return None;
        }
        if PYTHON_VALUE_OPTIONS.contains(&a.as_str()) {
            args.next();
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        return a
            .ends_with(".py")
            .then(|| format!("python: {a} ({})", absolute(c, a)));
    }
    None
}

/// `node`/`ruby` scripts: the first argument with one of `exts` that is not a
/// `--require`/`-r` value.
fn script(c: &Cmdline<'_>, runtime: &str, exts: &[&str], label: &str) -> Option<String> {
    let name = basename(c.args.first()?);
    let matches = name == runtime
        || name.strip_prefix(runtime).is_some_and(|v| {
            v.starts_with(|ch: char| ch.is_ascii_digit() || ch == '-' || ch == '.')
        });
    if !matches {
        return None;
    }
    let mut args = c.args.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "--require" || a == "-r" {
            args.next();
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        if exts.iter().any(|e| a.ends_with(e)) {
            return Some(format!("{label}: {a} ({})", absolute(c, a)));
        }
        // The first operand is the script; what follows is its own.
        return None;
    }
    None
}

/// JVM options that take the next argument as their value.
const JAVA_VALUE_OPTIONS: &[&str] = &[
    "-cp",
    "-classpath",
    "--class-path",
    "-p",
    "--module-path",
    "--upgrade-module-path",
    "--add-modules",
    "--add-opens",
    "--add-exports",
    "--add-reads",
    "--patch-module",
    "--limit-modules",
    "--enable-native-access",
];

/// `java [options] -jar x.jar ...`, `java [options] -m mod/Main`, `java [options]
/// com.acme.Main ...`: the jar, module or main class, as `jcmd VM.command_line`'s
/// `java_command` starts.
fn java(args: &[String]) -> Option<String> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-jar" | "-m" | "--module" => return it.next().map(|v| format!("java: {v}")),
            o if JAVA_VALUE_OPTIONS.contains(&o) => {
                it.next();
            }
            o if o.starts_with('-') || o.starts_with('@') => {}
            class => return Some(format!("java: {class}")),
        }
    }
    None
}

/// Reads `/proc/PID/cmdline` (at most 64 KiB) and `/proc/PID/cwd`, through
/// `proc` (normally `/proc`).
pub fn read_cmdline(proc: &Path, pid: u32) -> Option<(Vec<String>, Option<String>)> {
    use std::io::Read;
    let f = std::fs::File::open(proc.join(format!("{pid}/cmdline"))).ok()?;
    let mut raw = Vec::new();
    f.take(64 << 10).read_to_end(&mut raw).ok()?;
    let mut args: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // The final NUL leaves one empty argument.
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    if args.is_empty() {
        return None; // a kernel thread, or a zombie
    }
    let cwd = std::fs::read_link(proc.join(format!("{pid}/cwd")))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    Some((args, cwd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(cmd: &str) -> Option<String> {
        id_with(cmd, &|_| None)
    }

    fn id_with(cmd: &str, read: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let args: Vec<String> = cmd.split(' ').map(String::from).collect();
        app_id(
            &Cmdline {
                args: &args,
                cwd: Some("/srv/app"),
            },
            read,
        )
    }

    const SECRET: &str = "hunter2";

    /// Every id of a command line ending in a secret: the secret never shows.
    fn no_secret(cmd: &str) -> Option<String> {
        let full = format!("{cmd} --password {SECRET} token={SECRET}");
        let r = id(&full);
        assert!(
            !r.as_deref().unwrap_or("").contains(SECRET),
            "{full} -> {r:?}"
        );
        r
    }

    #[test]
    fn python_scripts_and_modules() {
        assert_eq!(
            no_secret("python3 x.py").as_deref(),
            Some("python: x.py (/srv/app/x.py)")
        );
        assert_eq!(
            no_secret("/usr/bin/python3.11 -u -X dev ../tools/run.py").as_deref(),
            Some("python: ../tools/run.py (/srv/tools/run.py)")
        );
        assert_eq!(
            no_secret("python /abs/x.py").as_deref(),
            Some("python: /abs/x.py (/abs/x.py)")
        );
        assert_eq!(
            no_secret("python3 -m http.server").as_deref(),
            Some("python: -m http.server")
        );
        assert_eq!(
            no_secret("python -m pyspark.daemon").as_deref(),
            Some("pyspark")
        );
        // A `-m` after the script is the script's own argument.
        assert_eq!(id("python3 tool -m x"), None);
        assert_eq!(id("python3 -c print(1)"), None);
        assert_eq!(id("pythonista x.py"), None);
    }

    #[test]
    fn gunicorn_uvicorn_uwsgi_celery() {
        assert_eq!(
            no_secret("/venv/bin/gunicorn -w 4 -b :80 app.wsgi:application").as_deref(),
            Some("gunicorn: app.wsgi:application (/srv/app/app/wsgi.py)")
        );
        assert_eq!(
            no_secret("python /venv/bin/gunicorn main:create_app(secret='hunter2')").as_deref(),
            Some("gunicorn: main:create_app (/srv/app/main.py)")
        );
        let title = [
            "gunicorn: worker [site.wsgi:app]".to_string(),
            String::new(),
        ];
        assert_eq!(
            app_id(
                &Cmdline {
                    args: &title,
                    cwd: Some("/srv/app")
                },
                &|_| None
            )
            .as_deref(),
            Some("gunicorn: site.wsgi:app (/srv/app/site/wsgi.py)")
        );
        assert_eq!(
            no_secret("uvicorn --factory api:build --port 8000").as_deref(),
            Some("uvicorn: api:build (/srv/app/api.py)")
        );
        assert_eq!(
            no_secret("uwsgi -w app.wsgi").as_deref(),
            Some("uwsgi: app.wsgi (/srv/app/app/wsgi.py)")
        );
        let ini = |p: &str| {
            (p == "/srv/app/conf/u.ini").then(|| "[uwsgi]\nmodule = svc.wsgi:app\n".to_string())
        };
        assert_eq!(
            id_with("uwsgi --ini conf/u.ini", &ini).as_deref(),
            Some("uwsgi: conf/u.ini (/srv/app/svc/wsgi:app.py)")
        );
        assert_eq!(
            id("uwsgi --ini other.ini").as_deref(),
            Some("uwsgi: other.ini")
        );
        assert_eq!(
            id("uwsgi --http :80").as_deref(),
            Some("uwsgi: ini file / wsgi module not found")
        );
        assert_eq!(
            no_secret("celery -A proj worker").as_deref(),
            Some("celery: proj (/srv/app/proj.py)")
        );
        assert_eq!(
            no_secret("python3 -m celery --app=tasks.app worker").as_deref(),
            Some("celery: tasks.app (/srv/app/tasks/app.py)")
        );
        assert_eq!(
            no_secret("celery worker -Q mail").as_deref(),
            Some("celery queue: mail (/srv/app)")
        );
    }

    #[test]
    fn java_node_ruby() {
        assert_eq!(
            no_secret("java -Xmx1g -Dkey=hunter2 -jar /opt/x.jar").as_deref(),
            Some("java: /opt/x.jar")
        );
        assert_eq!(
            no_secret(
                "/usr/lib/jvm/bin/java -cp a.jar:b.jar -XX:+PreserveFramePointer com.acme.Main"
            )
            .as_deref(),
            Some("java: com.acme.Main")
        );
        assert_eq!(
            no_secret("java --module-path m -m app/app.Main").as_deref(),
            Some("java: app/app.Main")
        );
        assert_eq!(
            no_secret("node --require ./otel.js --max-old-space-size=512 server.js").as_deref(),
            Some("nodejs: server.js (/srv/app/server.js)")
        );
        assert_eq!(
            no_secret("node20 /opt/a/index.mjs").as_deref(),
            Some("nodejs: /opt/a/index.mjs (/opt/a/index.mjs)")
        );
        assert_eq!(id("node -e x"), None);
        assert_eq!(
            no_secret("ruby -rbundler/setup x.rb").as_deref(),
            Some("ruby: x.rb (/srv/app/x.rb)")
        );
        assert_eq!(id("nodemon x.js"), None);
        assert_eq!(id("bash -c x"), None);
    }

    #[test]
    fn paths_are_normalized() {
        let c = Cmdline {
            args: &[],
            cwd: Some("/a/b/"),
        };
        assert_eq!(absolute(&c, "../c/./d.py"), "/a/c/d.py");
        assert_eq!(
            absolute(
                &Cmdline {
                    args: &[],
                    cwd: None
                },
                "x.py"
            ),
            "x.py"
        );
    }

    #[test]
    fn reads_this_process() {
        let (args, cwd) = read_cmdline(Path::new("/proc"), std::process::id()).unwrap();
        assert!(!args.is_empty() && cwd.is_some());
        assert!(read_cmdline(Path::new("/proc"), u32::MAX - 3).is_none());
    }
}
