//! One attach to a running JVM, as the perf source makes each window (used by
//! `scripts/measure-jit.sh` to measure it against `jcmd`):
//!
//! ```sh
//! cargo run --release --example jvm_attach -- PID [perfmap|flags|version]
//! ```
//!
//! Prints the JVM's answer; exits 1 with the error otherwise.

use std::time::Duration;

use profpipe::process::jvm_attach::{execute, JvmCommand, JvmTarget};

fn main() {
    let mut args = std::env::args().skip(1);
    let pid: u32 = match args.next().and_then(|a| a.parse().ok()) {
        Some(p) => p,
        None => {
            eprintln!("usage: jvm_attach PID [perfmap|flags|version]");
            std::process::exit(2);
        }
    };
    let command = match args.next().as_deref() {
        None | Some("perfmap") => JvmCommand::PerfMap,
        Some("flags") => JvmCommand::Flags,
        Some("version") => JvmCommand::Version,
        Some(other) => {
            eprintln!("unknown command {other:?} (perfmap, flags or version)");
            std::process::exit(2);
        }
    };
    let result = JvmTarget::read(pid).and_then(|t| execute(&t, command, Duration::from_secs(3)));
    match result {
        Ok(reply) => print!("{}", reply.output),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
