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

fn read_toml_defaults(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
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
                            .ok_or_else(|| format!("`{key}`: arrays hold strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                _ => {
                    return Err(format!(
                        "`{key}`: use a string, integer, boolean or array of strings"
                    ));
                }
            };
            Ok((key, text))
        })
        .collect()
}
