//! The command line with a TOML file's values as defaults
//! (IDENTITY_CONFIG_FILE).

use crate::cli::Cli;
use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Parses the command line with a TOML file's values as defaults.
pub fn parse_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    if let Some(file) = config_file_from(&args) {
        let defaults = read_toml_defaults(&file).map_err(|problem| {
            command.error(
                clap::error::ErrorKind::InvalidValue,
                format!("IDENTITY_CONFIG_FILE {}: {problem}", file.display()),
            )
        })?;
        let known: Vec<String> = command
            .find_subcommand("serve")
            .map(|s| s.get_arguments().map(|a| a.get_id().to_string()).collect())
            .unwrap_or_default();
        for (key, _) in &defaults {
            if !known.contains(key) || key == "config_file" {
                return Err(command.error(
                    clap::error::ErrorKind::UnknownArgument,
                    format!(
                        "IDENTITY_CONFIG_FILE {}: unknown setting `{key}`",
                        file.display()
                    ),
                ));
            }
        }
        command = command.mut_subcommand("serve", |mut serve| {
            for (key, value) in defaults {
                serve = serve.mut_arg(key, |arg| arg.default_value(value));
            }
            serve
        });
    }
    let matches = command.try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

fn config_file_from(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("IDENTITY_CONFIG_FILE").map(PathBuf::from)
}

/// Why IDENTITY_CONFIG_FILE was refused; clap reports it after the file's
/// name.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    /// Only the message: the full form quotes the file's lines.
    #[error("{}", .0.message())]
    Toml(#[from] toml::de::Error),
    #[error("`{0}`: arrays hold strings")]
    ArrayItem(String),
    #[error("`{0}`: use a string, integer, boolean or array of strings")]
    ValueType(String),
}

fn read_toml_defaults(path: &Path) -> Result<Vec<(String, String)>, FileError> {
    let text = std::fs::read_to_string(path)?;
    let table: toml::Table = text.parse()?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| FileError::ArrayItem(key.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                _ => return Err(FileError::ValueType(key)),
            };
            Ok((key, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(contents: &str) -> String {
        let path = std::env::temp_dir().join(format!("identity-toml-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).unwrap();
        let read = read_toml_defaults(&path);
        let _ = std::fs::remove_file(&path);
        read.unwrap_err().to_string()
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_named_by_its_key_and_a_broken_line_is_not_echoed() {
        assert_eq!(
            refusal("max_message_bytes = 1.5\n"),
            "`max_message_bytes`: use a string, integer, boolean or array of strings"
        );
        assert_eq!(
            refusal("trusted_proxies = [\"10.0.0.0/8\", 7]\n"),
            "`trusted_proxies`: arrays hold strings"
        );
        let broken = refusal("secret_key = \"hunter2-unterminated\n");
        assert!(!broken.contains("hunter2"), "{broken}");
        let missing = std::env::temp_dir().join(format!("identity-toml-{}", uuid::Uuid::new_v4()));
        assert!(matches!(
            read_toml_defaults(&missing),
            Err(FileError::Read(_))
        ));
    }
}
