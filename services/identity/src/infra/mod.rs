//! Infrastructure the use cases lean on that is neither the database nor
//! gRPC: the bcrypt thread pool and the rate-limit counters (local, or in
//! Redis). They report their health on watch channels that `server.rs`
//! turns into health statuses.

pub mod bcrypt;
pub mod limits;
