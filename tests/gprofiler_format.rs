//! gProfiler's collapsed format for Python version tags and appid frames, end to
//! end: py-spy stacks get their tags, `merge` replaces perf's stacks of the process
//! with them (frames untouched, counts scaled), the `app_id` step puts the appid
//! frame after the comm, and the collapsed writer prints the lines gProfiler's back
//! end reads (gprofiler-facts.md §4: `<idx>;<container>;<comm>;appid: ...;frames
//! count`, tags `(file.py:N [pkg==ver])_[p]`).
//!
//! The expected file is `tests/data/gprofiler/merged-appid.col`;
//! `PROFPIPE_BLESS=1 cargo test --test gprofiler_format` rewrites it (it never
//! creates a missing one).

use std::path::Path;

use profpipe::event::{Labels, Stack, Window};
use profpipe::formats::collapsed::write_stack;
use profpipe::process::python_versions::{Limits, PythonVersions};
use profpipe::transforms::app_id::AppIds;
use profpipe::transforms::merge::merge_window;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn stack(pid: u32, container: Option<&str>, frames: &str, count: u64) -> Stack {
    Stack {
        pid,
        container: container.map(Into::into),
        ..Stack::new(frames, count)
    }
}

fn labels(profiler: &str) -> Labels {
    Labels {
        host: "web-1".into(),
        source: profiler.into(),
        profiler: profiler.into(),
        extra: Default::default(),
    }
}

/// A fake `/proc` with one process: its cmdline (with a secret after the app),
/// start time and working directory.
fn fake_proc(proc: &Path, pid: u32, cmdline: &[&str], cwd: &str) {
    let d = proc.join(pid.to_string());
    std::fs::create_dir_all(&d).unwrap();
    let mut raw = cmdline.join("\0");
    raw.push('\0');
    std::fs::write(d.join("cmdline"), raw).unwrap();
    std::fs::write(
        d.join("stat"),
        format!("{pid} (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0"),
    )
    .unwrap();
    std::os::unix::fs::symlink(cwd, d.join("cwd")).unwrap();
}

#[test]
fn merged_window_in_gprofiler_collapsed_format() {
    let tmp = tempfile::tempdir().unwrap();
    // The files py-spy's frames name, as the process sees them.
    let root = tmp.path().join("root");
    let site = "srv/venv/lib/python3.11/site-packages";
    write(
        &root,
        &format!("{site}/flask-3.0.3.dist-info/METADATA"),
        "Name: Flask\nVersion: 3.0.3\n",
    );
    write(
        &root,
        &format!("{site}/flask-3.0.3.dist-info/RECORD"),
        "flask/app.py,sha256=x,1\n",
    );
    write(&root, &format!("{site}/flask/app.py"), "");
    write(&root, "usr/lib/python3.11/json/encoder.py", "");
    write(&root, "srv/app/app/wsgi.py", "");
    let proc = tmp.path().join("proc");
    fake_proc(
        &proc,
        10,
        &[
            "/srv/venv/bin/gunicorn",
            "-w",
            "2",
            "app.wsgi:application",
            "--api-key",
            "s3cr3t",
        ],
        "/srv/app",
    );
    fake_proc(
        &proc,
        20,
        &[
            "java",
            "-Xmx1g",
            "-Dpassword=s3cr3t",
            "-jar",
            "/opt/ledger.jar",
            "--token",
            "s3cr3t",
        ],
        "/opt",
    );

    let mut py = vec![
        stack(10, None, "gunicorn: worke;<module> (/srv/app/app/wsgi.py:3)_[p];wsgi_app (/srv/venv/lib/python3.11/site-packages/flask/app.py:1498)_[p];encode (/usr/lib/python3.11/json/encoder.py:200)_[p]", 30),
        stack(10, None, "gunicorn: worke;<module> (/srv/app/app/wsgi.py:3)_[p];wsgi_app (/srv/venv/lib/python3.11/site-packages/flask/app.py:1501)_[p]", 10),
    ];
    let v = PythonVersions::new(Limits::default());
    assert_eq!(v.tag_stacks_under(&root, Some("3.11.7"), &mut py), 3);
    let perf = vec![
        stack(
            10,
            Some("web"),
            "gunicorn: worke;_PyEval_EvalFrameDefault;do_syscall_64_[k]",
            8,
        ),
        stack(
            20,
            Some("ledger"),
            "java;Interpreter;long Ledger.reconcile()_[j]",
            5,
        ),
        stack(30, None, "swapper;cpu_startup_entry_[k]", 7),
    ];
    let w = Window::new(1_700_000_000_000, 1_700_000_060_000);
    let (parts, _) = merge_window(
        w,
        vec![(labels("perf"), perf), (labels("py-spy"), py)],
        vec![],
    );
    let mut ids = AppIds::new(&proc, 16);
    let mut lines = Vec::new();
    for (labels, stacks) in parts {
        let mut p = profpipe::event::Profile::new(w, labels, stacks);
        ids.add_frames(&mut p);
        for s in &p.stacks {
            let mut line = Vec::new();
            write_stack(&mut line, s).unwrap();
            lines.push(String::from_utf8(line).unwrap());
        }
    }
    lines.sort();
    let got = lines.concat();
    assert!(
        !got.contains("s3cr3t"),
        "a secret reached the profile:\n{got}"
    );
    // gProfiler's shape: index; container; comm; appid; frames count.
    let shape = regex::Regex::new(r"^0;[^;]*;[^;]+(;appid: [^;]+)?(;[^;]+)* \d+$").unwrap();
    for l in got.lines() {
        assert!(shape.is_match(l), "not gProfiler's collapsed shape: {l}");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gprofiler/merged-appid.col");
    let bless = std::env::var_os("PROFPIPE_BLESS").is_some_and(|v| v == "1");
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{}: missing expected file (bless never creates one)",
            path.display()
        )
    });
    if bless && want != got {
        std::fs::write(&path, &got).unwrap();
        eprintln!("blessed {}", path.display());
        return;
    }
    assert_eq!(got, want, "{} differs", path.display());
}
