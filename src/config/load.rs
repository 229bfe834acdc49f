//! Reading a config file (placeholder until the loader lands).

use std::path::Path;

use super::{Config, ConfigError, ConfigErrors, Registry};

pub fn load_file(path: &Path, registry: &Registry) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    load_str(path, &text, registry)
}

pub fn load_str(name: &Path, _text: &str, _registry: &Registry) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(vec![ConfigError {
        file: name.to_path_buf(),
        line: 0,
        column: 0,
        message: "config loading is not implemented yet".into(),
    }]))
}
