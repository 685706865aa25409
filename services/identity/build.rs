//! Compiles `proto/identity/v1/*.proto` with protox (pure Rust), so building
//! needs no `protoc` on the machine, and the Envoy external authorization
//! service from the vendored `proto/third_party` (its messages come from the
//! `envoy-types` crate; only the service is generated here, with our codec).

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "identity/v1/audit.proto",
        "identity/v1/auth.proto",
        "identity/v1/profile.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }

    let fds = protox::compile(files, [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Served by gRPC reflection (v1 and v1alpha).
    fs::write(out_dir.join("identity_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A request that does not decode is the caller's INVALID_ARGUMENT,
        // not tonic-prost's INTERNAL (src/transport/codec.rs).
        .codec_path("crate::transport::codec::Codec")
        // Messages that carry secrets get a hand-written, redacting Debug
        // (see src/proto.rs) so that a stray `{:?}` can never log them.
        .skip_debug([
            ".identity.v1.RegisterRequest",
            ".identity.v1.LoginRequest",
            ".identity.v1.LoginResponse",
            ".identity.v1.RefreshRequest",
            ".identity.v1.LogoutRequest",
            ".identity.v1.ValidateTokenRequest",
            ".identity.v1.ChangePasswordRequest",
            ".identity.v1.TokenPair",
            ".identity.v1.ExchangeTokenRequest",
            ".identity.v1.ServiceLoginRequest",
            ".identity.v1.ServiceLoginResponse",
        ])
        .compile_fds(fds)?;

    let third_party = proto_root.join("third_party");
    let envoy = "envoy/service/auth/v3/external_auth.proto";
    println!("cargo:rerun-if-changed={}", third_party.display());
    let fds = protox::compile([envoy], [&third_party])?;
    fs::write(out_dir.join("envoy_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Undecodable input is INVALID_ARGUMENT here too, never INTERNAL.
        .codec_path("crate::transport::codec::Codec")
        // Every message is envoy-types' own: one definition of CheckRequest
        // in the binary, and the same Rust types its users know.
        .extern_path(".envoy", "::envoy_types::pb::envoy")
        .extern_path(".google", "::envoy_types::pb::google")
        .extern_path(".udpa", "::envoy_types::pb::udpa")
        .extern_path(".xds", "::envoy_types::pb::xds")
        .extern_path(".validate", "::envoy_types::pb::validate")
        .compile_fds(fds)?;
    Ok(())
}
