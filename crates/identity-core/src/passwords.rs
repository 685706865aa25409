//! The password policy: what a presented password and a new one must be.
//! Hashing them (bcrypt on its own thread pool) is infrastructure and lives
//! in the service crate.

use crate::error::Invalid;

/// bcrypt reads at most 72 bytes; longer passwords are refused, never
/// truncated and never pre-hashed (docs/decisions/0002).
pub const MAX_PASSWORD_BYTES: usize = 72;
pub const MIN_PASSWORD_CHARS: usize = 8;

fn too_long() -> Invalid {
    format!(
        "must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt's limit; longer passwords are refused, not truncated)"
    )
    .into()
}

/// A password presented to be compared with a stored hash (Login, the
/// current one of ChangePassword): required and within bcrypt's limit,
/// nothing more. No stored password is longer, so a longer one is named
/// without running bcrypt.
pub fn check_presented(password: &str) -> Result<(), Invalid> {
    if password.is_empty() {
        return Err("is required".into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(too_long());
    }
    Ok(())
}

/// Checks what bcrypt itself needs; the guessability policy comes on top.
pub fn check_length(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters").into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(too_long());
    }
    if password.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// The full policy for a new password (NIST SP 800-63B §3.1.1.2, OWASP
/// ASVS 5 V6.2): length as above, no composition rules, and refused when
/// guessable — a zxcvbn score below `min_score` (dictionary words, common
/// passwords, keyboard patterns, the user's own email or name) or containing
/// the email's local part.
pub fn check_new(
    password: &str,
    email: &str,
    display_name: &str,
    min_score: u8,
) -> Result<(), Invalid> {
    check_length(password)?;
    let local = email.split('@').next().unwrap_or_default();
    if local.chars().count() >= 3 && password.to_lowercase().contains(&local.to_lowercase()) {
        return Err("must not contain the name part of your email address".into());
    }
    let inputs: Vec<&str> = [email, local, display_name]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    let score = u8::from(estimate.score());
    if score < min_score {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(format!(
            "is too easy to guess{hint}; use a longer passphrase of unrelated words"
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_limits_are_characters_below_and_bytes_above() {
        assert!(check_length("short").is_err());
        assert!(check_length("eight ch").is_ok());
        assert!(check_length(&"a".repeat(72)).is_ok());
        let err = check_length(&"a".repeat(73)).unwrap_err();
        assert!(err.description().contains("72 bytes"), "{err}");
        // 25 three-byte characters: 25 characters but 75 bytes.
        assert!(check_length(&"€".repeat(25)).is_err());
        assert!(check_length("with\0nul byte").is_err());
    }

    #[test]
    fn guessable_passwords_and_the_email_name_are_refused_with_a_reason() {
        assert!(check_new("correct horse battery staple", "ann@example.com", "Ann", 3).is_ok());
        let err = check_new("password123", "ann@example.com", "", 3).unwrap_err();
        assert!(err.description().contains("too easy to guess"), "{err}");
        assert!(check_new("qwertyuiop", "ann@example.com", "", 3).is_err());
        let err = check_new("annabel-river-quartz-42", "annabel@example.com", "", 3).unwrap_err();
        assert!(err.description().contains("email"), "{err}");
        // No composition rules: a long lower-case passphrase is fine.
        assert!(check_new("violet meadows under rusty bridges", "x@example.com", "", 3).is_ok());
    }
}
