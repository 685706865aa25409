//! Input rules shared by every RPC. Each function returns the normalised
//! value or a description that names no secret and echoes no input.

pub const MAX_EMAIL_BYTES: usize = 254;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// Trims, checks the shape (one `@`, a local part of at most 64 bytes, a
/// dotted domain, no spaces or control characters) and lower-cases the
/// domain. The local part keeps its case: RFC 5321 lets it matter.
pub fn email(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("is required".into());
    }
    if trimmed.len() > MAX_EMAIL_BYTES {
        return Err(format!("must be at most {MAX_EMAIL_BYTES} bytes"));
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
pub fn display_name(input: &str, required: bool) -> Result<String, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return if required {
            Err("is required".into())
        } else {
            Ok(String::new())
        };
    }
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(format!(
            "must be at most {MAX_DISPLAY_NAME_CHARS} characters"
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

/// A required opaque string of bounded size (tokens and ids).
pub fn required(input: &str, max_bytes: usize) -> Result<&str, String> {
    if input.is_empty() {
        Err("is required".into())
    } else if input.len() > max_bytes {
        Err(format!("must be at most {max_bytes} bytes"))
    } else {
        Ok(input)
    }
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
}
