//! Invalid input, named field by field.

use std::borrow::Cow;

/// One invalid input field (becomes a `google.rpc.BadRequest` violation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// Why one value was refused, in words meant for the caller: it names no
/// secret and echoes no input. The rules of `validation`, `passwords`,
/// `roles` and `service_client` answer with it; it becomes a
/// [`FieldViolation`] once the use case says which field held the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(Cow<'static, str>);

impl Invalid {
    pub fn description(&self) -> &str {
        &self.0
    }

    /// The violation of `field`.
    pub fn at(self, field: &str) -> FieldViolation {
        FieldViolation {
            field: field.to_owned(),
            description: self.0.into_owned(),
        }
    }
}

impl From<&'static str> for Invalid {
    fn from(description: &'static str) -> Self {
        Invalid(Cow::Borrowed(description))
    }
}

impl From<String> for Invalid {
    fn from(description: String) -> Self {
        Invalid(Cow::Owned(description))
    }
}

/// Every invalid field of one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid argument: {}", .0.iter().map(|v| v.field.as_str()).collect::<Vec<_>>().join(", "))]
pub struct InvalidInput(pub Vec<FieldViolation>);

/// Collects violations so that one answer names every bad field.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check<T>(&mut self, field: &str, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(invalid) => {
                self.0.push(invalid.at(field));
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), InvalidInput> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidInput(self.0))
        }
    }
}
