//! Invalid input, named field by field.

/// One invalid input field (becomes a `google.rpc.BadRequest` violation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
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

    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(description) => {
                self.0.push(FieldViolation {
                    field: field.to_owned(),
                    description,
                });
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
