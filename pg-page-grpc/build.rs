//! Compiles `proto/page_service.proto` with protox (a protobuf compiler in Rust: no `protoc`
//! on the build machine) into a descriptor set, and generates the messages and the client
//! (and, with the `stand-in` feature, the server) from it with tonic's prost generator.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto/page_service.proto");
    let descriptors = protox::compile(["page_service.proto"], ["proto"])?;
    let server = std::env::var_os("CARGO_FEATURE_STAND_IN").is_some();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(server)
        .build_transport(false)
        // Archive chunks and page images as `Bytes`: handed on without a copy.
        .bytes(".page_api")
        .compile_fds(descriptors)?;
    Ok(())
}
