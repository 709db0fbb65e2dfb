//! Compiles `proto/` with protox (pure Rust, so no `protoc` is needed for our own
//! protos) and generates tonic clients and servers into OUT_DIR.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "sluice/common/v1/common.proto",
        "sluice/broker/v1/broker.proto",
        "sluice/controller/v1/controller.proto",
        "sluice/coordinator/v1/coordinator.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC server reflection.
    std::fs::write(
        out.join("sluice_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // Payloads stay `Bytes` so they are sliced from the gRPC frame, not copied.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
