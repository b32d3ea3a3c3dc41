//! Settings from three sources, layered: a flag beats its environment variable (clap reads
//! both), which beats the TOML file named by `--config`, which beats the built-in default.
//!
//! A program keeps its settings in one struct that is both a clap parser and a serde
//! `Deserialize` (kebab-case keys, unknown keys refused so a typo never goes unnoticed), with
//! every field an `Option` so each source may leave it out. [`merge_options!`] writes the
//! [`Merge`] that layers two such structs; [`read_toml`] reads the file.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{0}")]
    Invalid(String),
}

/// Layering: `self` where it is set, else `lower`.
pub trait Merge {
    fn merge(self, lower: Self) -> Self;
}

/// Implements [`Merge`] for a struct whose listed fields are all `Option`s (each field of the
/// struct must be listed: the struct literal fails to compile otherwise).
#[macro_export]
macro_rules! merge_options {
    ($ty:ty { $($f:ident),* $(,)? }) => {
        impl $crate::settings::Merge for $ty {
            fn merge(self, lower: Self) -> Self {
                Self { $($f: self.$f.or(lower.$f)),* }
            }
        }
    };
}

/// Reads a TOML settings file into `T`.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|source| SettingsError::Parse { path: path.into(), source: Box::new(source) })
}

/// `cli` layered over the file at `config`, if one is named.
pub fn layered<T: Merge + DeserializeOwned>(cli: T, config: Option<&Path>) -> Result<T, SettingsError> {
    match config {
        Some(path) => Ok(cli.merge(read_toml(path)?)),
        None => Ok(cli),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    struct Demo {
        max_storage: Option<String>,
        relay_only: Option<bool>,
    }
    merge_options!(Demo { max_storage, relay_only });

    #[test]
    fn higher_layer_wins_where_set() {
        let dir = std::env::temp_dir().join(format!("pp-cli-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("demo.toml");
        std::fs::write(&file, "max-storage = \"20GB\"\nrelay-only = true\n").unwrap();
        let cli = Demo { max_storage: Some("1GB".into()), relay_only: None };
        let merged = layered(cli, Some(&file)).unwrap();
        assert_eq!(merged, Demo { max_storage: Some("1GB".into()), relay_only: Some(true) });
        std::fs::write(&file, "max-storag = 1\n").unwrap();
        let e = layered(Demo::default(), Some(&file)).unwrap_err().to_string();
        assert!(e.contains("max-storag") && e.contains("demo.toml"), "{e}");
        let e = layered(Demo::default(), Some(&dir.join("missing.toml"))).unwrap_err().to_string();
        assert!(e.contains("cannot read config file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
