//! What to run: program, arguments, environment, where stdout goes, and how long the
//! child may live. A `Spec` is plain data, cheap to clone for restarts.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the child's stdout goes. Stdin is `/dev/null` unless
/// [`Spec::stdin_piped`] asks for a pipe; stderr is always captured by the
/// supervisor into a bounded tail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stdout {
    /// Discarded (`/dev/null`).
    #[default]
    Null,
    /// A pipe the caller reads through [`Child::stdout`](super::Child::stdout).
    Piped,
    /// Written to this file, created or truncated.
    File(PathBuf),
    /// Appended to this file, created if missing.
    Append(PathBuf),
}

/// A command to run under the supervisor.
///
/// ```ignore
/// Spec::new("py-spy")
///     .args(["record", "--format", "raw", "-p", "1234", "-d", "60"])
///     .deadline(Duration::from_secs(70))
///     .stdout(Stdout::Piped)
/// ```
#[derive(Clone, Debug)]
pub struct Spec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) env_clear: bool,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) kill_grace: Option<Duration>,
    pub(crate) stdout: Stdout,
    pub(crate) stdin_piped: bool,
    pub(crate) label: String,
}

impl Spec {
    /// A command running `program` (a path, or a name looked up in `PATH`).
    pub fn new(program: impl AsRef<OsStr>) -> Spec {
        let program = program.as_ref().to_os_string();
        let label = Path::new(&program)
            .file_name()
            .unwrap_or(&program)
            .to_string_lossy()
            .into_owned();
        Spec {
            program,
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            deadline: None,
            kill_grace: None,
            stdout: Stdout::Null,
            stdin_piped: false,
            label,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Spec {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets an environment variable for the child (the agent's environment is
    /// inherited otherwise).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spec {
        self.env.push((
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    /// Removes an inherited environment variable (e.g. `LD_PRELOAD`).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Spec {
        self.env.push((key.as_ref().to_os_string(), None));
        self
    }

    /// Starts the child with an empty environment (plus what [`env`](Self::env) adds).
    pub fn env_clear(mut self) -> Spec {
        self.env_clear = true;
        self.env.clear();
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Spec {
        self.cwd = Some(dir.into());
        self
    }

    /// The longest the child may run, counted from its start. When it passes the
    /// child's process group gets SIGTERM, then SIGKILL after the kill grace.
    pub fn deadline(mut self, deadline: Duration) -> Spec {
        self.deadline = Some(deadline);
        self
    }

    /// Time between SIGTERM and SIGKILL for this child (default: the supervisor's
    /// `kill_grace`). Give perf a little more to finish its output file.
    pub fn kill_grace(mut self, grace: Duration) -> Spec {
        self.kill_grace = Some(grace);
        self
    }

    pub fn stdout(mut self, stdout: Stdout) -> Spec {
        self.stdout = stdout;
        self
    }

    /// Gives the child a pipe as stdin, written through [`Child::take_stdin`](super::Child::take_stdin):
    /// a long-lived child the agent sends commands to.
    /// Closing it is the child's cue to exit.
    pub fn stdin_piped(mut self) -> Spec {
        self.stdin_piped = true;
        self
    }

    /// The `program` label of this child's metrics (default: the program's file
    /// name, so `/opt/x/bin/perf` counts as `perf`).
    pub fn label(mut self, label: impl Into<String>) -> Spec {
        self.label = label.into();
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    pub fn get_label(&self) -> &str {
        &self.label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_the_file_name() {
        assert_eq!(Spec::new("/usr/bin/perf").get_label(), "perf");
        assert_eq!(Spec::new("py-spy").get_label(), "py-spy");
        assert_eq!(Spec::new("/x/rbspy").label("ruby").get_label(), "ruby");
    }
}
