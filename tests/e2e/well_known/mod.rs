//! The `/.well-known/` listener over real sockets: the JWK set and the
//! discovery document, their caching, the refusals, the bounds on hostile
//! clients, and tokens verified by other ecosystems' libraries against it.

mod documents;
mod limits;
mod other_libraries;
