//! Hostile bytes over the wire: seeded random and mutated protobuf, broken
//! gRPC framing and hostile bearer metadata, sent to every unary method
//! (and to reflection).
//! INTERNAL and UNKNOWN are what operators page on, so no caller may earn
//! one with a bad request; and the server must stay SERVING. Also the
//! x-forwarded-for forgery through a proxy that adds a header line of its
//! own instead of appending to the client's.

mod corpus;
mod forwarded_for;
mod wire_input;

use crate::support::{Answer, Backend, PASSWORD, Server, ServerOptions, TestDb, email};
use crate::support::{frame, raw_call};
use http::{HeaderValue, Method};
use identity::proto::v1::*;
use prost::Message as _;
use tonic::Code;
use tonic::transport::Channel;
use tonic_reflection::pb::v1 as reflection;
