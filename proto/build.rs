//! Compiles `csi.proto` with protox (a pure-Rust protobuf compiler, so no system `protoc` is
//! needed) and generates the prost messages and tonic clients and servers from the descriptors.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto = manifest_dir.join("csi.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut compiler = protox::Compiler::new([&manifest_dir])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file(&proto).map_err(|e| format!("{}: {e:?}", proto.display()))?;

    // Code generation from our file with its comments. prost-build needs the imported
    // google.protobuf files in the set to resolve types, but generates nothing for them: the
    // whole package is an extern path to prost-types.
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(compiler.file_descriptor_set())?;

    // The descriptor set served for gRPC reflection: with the imports (so it is self-contained)
    // and the custom options, without source comments.
    compiler.include_source_info(false);
    std::fs::write(out_dir.join("csi_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    Ok(())
}
