//! Settings that name files: secrets given inline or as a file, and files
//! that must be readable at start.

use super::{ConfigError, refuse};
use std::path::Path;

pub(super) fn read_file_setting(setting: &'static str, path: &Path) -> Result<(), ConfigError> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|e| refuse(setting, format!("{}: {e}", path.display())))
}

/// A secret given either inline (`setting`) or as a file (`file_setting`),
/// e.g. a mounted Kubernetes Secret that keeps it out of the environment.
/// An empty inline value counts as unset. The file's trailing line break is
/// dropped: `kubectl create secret --from-file` and editors leave one, and
/// it would otherwise become part of a password.
pub(super) fn secret_setting(
    setting: &'static str,
    file_setting: &'static str,
    value: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    let value = value.filter(|v| !v.is_empty());
    let Some(path) = file else {
        return Ok(value);
    };
    if value.is_some() {
        return Err(refuse(
            file_setting,
            format!("{setting} and {file_setting} are both set: use one"),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| refuse(file_setting, format!("{}: {e}", path.display())))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(refuse(file_setting, format!("{} is empty", path.display())));
    }
    Ok(Some(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_from_file(contents: &str) -> Result<Option<String>, ConfigError> {
        let path = std::env::temp_dir().join(format!("identity-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).unwrap();
        let read = secret_setting(
            "IDENTITY_SECRET_KEY",
            "IDENTITY_SECRET_KEY_FILE",
            None,
            Some(&path),
        );
        let _ = std::fs::remove_file(&path);
        read
    }

    #[test]
    fn a_secret_file_loses_one_trailing_line_break_only() {
        assert_eq!(secret_from_file("abc\n").unwrap().as_deref(), Some("abc"));
        assert_eq!(secret_from_file("abc\r\n").unwrap().as_deref(), Some("abc"));
        assert_eq!(secret_from_file("abc").unwrap().as_deref(), Some("abc"));
        assert_eq!(
            secret_from_file(" abc \n\n").unwrap().as_deref(),
            Some(" abc \n")
        );
        let empty = secret_from_file("\n").unwrap_err();
        assert_eq!(empty.setting, "IDENTITY_SECRET_KEY_FILE");
    }

    #[test]
    fn an_empty_inline_secret_yields_to_its_file() {
        let path = std::env::temp_dir().join(format!("identity-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, "from-file\n").unwrap();
        let read = secret_setting(
            "IDENTITY_SECRET_KEY",
            "IDENTITY_SECRET_KEY_FILE",
            Some(String::new()),
            Some(&path),
        );
        let _ = std::fs::remove_file(&path);
        assert_eq!(read.unwrap().as_deref(), Some("from-file"));
    }
}
