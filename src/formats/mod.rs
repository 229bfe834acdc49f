//! Parsers and writers of the stack formats profpipe reads and writes.
pub mod perf_script;
