//! Input rules shared by every RPC. Each function returns the normalised
//! value or an [`Invalid`] whose description names no secret and echoes
//! no input.

use crate::error::Invalid;

pub const MAX_EMAIL_BYTES: usize = 254;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// Trims, checks the shape (one `@`, a local part of at most 64 bytes, a
/// dotted domain, no spaces or control characters) and lower-cases the
/// domain. The local part keeps its case: RFC 5321 lets it matter.
pub fn email(input: &str) -> Result<String, Invalid> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("is required".into());
    }
    if trimmed.len() > MAX_EMAIL_BYTES {
        return Err(format!("must be at most {MAX_EMAIL_BYTES} bytes").into());
    }
    if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    let Some((local, domain)) = trimmed.rsplit_once('@') else {
        return Err("must be an email address (name@domain)".into());
    };
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return Err("must be an email address (name@domain)".into());
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

/// 1 to 100 characters, no control characters; surrounding whitespace is
/// trimmed. Empty is allowed where `required` is false.
pub fn display_name(input: &str, required: bool) -> Result<String, Invalid> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return if required {
            Err("is required".into())
        } else {
            Ok(String::new())
        };
    }
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters").into());
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

/// A required opaque string of bounded size (tokens and ids).
pub fn required(input: &str, max_bytes: usize) -> Result<&str, Invalid> {
    if input.is_empty() {
        Err("is required".into())
    } else if input.len() > max_bytes {
        Err(format!("must be at most {max_bytes} bytes").into())
    } else {
        Ok(input)
    }
}

pub const MAX_AVATAR_URL_BYTES: usize = 2048;
pub const MAX_AUTH_FIELD_BYTES: usize = 255;

/// An absolute `https` URL of at most 2048 bytes, without spaces, control
/// characters or credentials. Empty clears the avatar.
pub fn avatar_url(input: &str) -> Result<String, Invalid> {
    if input.is_empty() {
        return Ok(String::new());
    }
    if input.len() > MAX_AVATAR_URL_BYTES {
        return Err(format!("must be at most {MAX_AVATAR_URL_BYTES} bytes").into());
    }
    if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    let Some(rest) = input.strip_prefix("https://") else {
        return Err("must be an absolute https:// URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("must be an absolute https:// URL with a host and no credentials".into());
    }
    Ok(input.to_owned())
}

/// A BCP 47 language tag in its common shape (`en`, `en-GB`,
/// `zh-Hant-TW`, `es-419`): a 2–3 letter language, then subtags of 1–8
/// letters or digits. Empty clears the locale.
pub fn locale(input: &str) -> Result<String, Invalid> {
    if input.is_empty() {
        return Ok(String::new());
    }
    let mut parts = input.split('-');
    let language = parts.next().unwrap_or_default();
    let language_ok =
        (2..=3).contains(&language.len()) && language.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if input.len() > 35 || !language_ok || !rest_ok {
        return Err("must be a BCP 47 language tag such as en or en-GB".into());
    }
    Ok(input.to_owned())
}

/// Role names: 1–32 of `a-z`, `0-9`, `_`, `-`; duplicates removed, sorted.
pub fn roles(input: &[String]) -> Result<Vec<String>, Invalid> {
    if input.len() > 32 {
        return Err("at most 32 roles".into());
    }
    let mut roles = Vec::with_capacity(input.len());
    for role in input {
        let ok = (1..=32).contains(&role.len())
            && role
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        // Who may hold them is `roles::check_for_provider`'s to decide.
        if !ok && !crate::roles::SERVICE_ONLY_ROLES.contains(&role.as_str()) {
            return Err("each role must be 1-32 characters of a-z, 0-9, _ or -".into());
        }
        roles.push(role.clone());
    }
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// `auth_provider` and `auth_id`: required, at most 255 bytes, no control
/// characters. Kept byte for byte otherwise: external ids are opaque.
pub fn auth_field(input: &str) -> Result<String, Invalid> {
    if input.is_empty() {
        return Err("is required".into());
    }
    if input.len() > MAX_AUTH_FIELD_BYTES {
        return Err(format!("must be at most {MAX_AUTH_FIELD_BYTES} bytes").into());
    }
    if input.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(input.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_its_domain_lower_cased() {
        assert_eq!(
            email("  Ann.Lee@Example.COM ").unwrap(),
            "Ann.Lee@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a\u{0}@x.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(email(&format!("a@{}.com", "b".repeat(250))).is_err());
    }

    #[test]
    fn display_names_are_bounded_and_printable() {
        assert_eq!(display_name(" Ann ", true).unwrap(), "Ann");
        assert!(display_name("", true).is_err());
        assert_eq!(display_name("", false).unwrap(), "");
        assert!(display_name(&"x".repeat(101), true).is_err());
        assert!(display_name(&"é".repeat(100), true).is_ok());
        assert!(display_name("bell\u{7}", true).is_err());
    }

    #[test]
    fn avatar_urls_must_be_absolute_https() {
        assert!(avatar_url("https://cdn.example.com/a.png").is_ok());
        assert!(avatar_url("").is_ok());
        for bad in [
            "http://x.com/a.png",
            "https://",
            "javascript:alert(1)",
            "https://u:p@x.com/",
            "https://x.com/a b",
        ] {
            assert!(avatar_url(bad).is_err(), "{bad}");
        }
        assert!(avatar_url(&format!("https://x.com/{}", "a".repeat(2048))).is_err());
    }

    #[test]
    fn locales_are_bcp47_shaped() {
        for good in ["en", "en-GB", "zh-Hant-TW", "es-419", "de-CH-1996"] {
            assert!(locale(good).is_ok(), "{good}");
        }
        for bad in ["e", "english!", "en_GB", "-en", "en--GB", "toolonglanguage"] {
            assert!(locale(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_are_lowercase_names() {
        assert_eq!(
            roles(&["b".into(), "admin".into(), "b".into()]).unwrap(),
            ["admin", "b"]
        );
        assert_eq!(roles(&["profiles:read".into()]).unwrap(), ["profiles:read"]);
        assert!(roles(&["Admin".into()]).is_err());
        assert!(roles(&["".into()]).is_err());
    }
}
