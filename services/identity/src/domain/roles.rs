//! Role names with a meaning to the service itself.

/// May read, change and delete every profile and change roles.
pub const ADMIN_ROLE: &str = "admin";
