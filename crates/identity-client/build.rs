//! Client stubs for `identity.v1` from the repository's own protos
//! (protox: pure Rust, no `protoc` needed). Clients only: this crate never
//! serves identity's API.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["identity/v1/auth.proto", "identity/v1/profile.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let fds = protox::compile(files, [&proto_root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        // The messages this crate sends or receives that carry a token or a
        // secret get a redacting Debug (src/proto.rs); the module is private,
        // so no other message leaves the crate.
        .skip_debug([
            ".identity.v1.ValidateTokenRequest",
            ".identity.v1.ServiceLoginRequest",
            ".identity.v1.ServiceLoginResponse",
        ])
        .compile_fds(fds)?;
    Ok(())
}
