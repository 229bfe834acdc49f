//! Config files (`profpipe run --config`, `profpipe validate`, reloads): any text is a
//! config or a list of located errors, never a panic. `${NAME}` is looked up in a
//! fixed environment so runs are reproducible.
//!
//! Input: the TOML text (bytes that are not UTF-8 are refused before the loader,
//! as `load_file` refuses them).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use profpipe::config::{load_str_with_env, Registry};

fn env(name: &str) -> Result<String, std::env::VarError> {
    match name {
        "HOME" => Ok("/root".into()),
        "TOKEN" => Ok("secret".into()),
        "PORT" => Ok("4040".into()),
        _ => Err(std::env::VarError::NotPresent),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(profpipe::registry::registry);
    if let Err(errors) = load_str_with_env(Path::new("fuzz.toml"), text, registry, &env) {
        // Every error is located and says something.
        let text = errors.to_string();
        assert!(!text.is_empty());
    }
});
