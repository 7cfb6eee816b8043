//! Compiles the agent protocol with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/vrouter/agent/v1/agent.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The `Connect` RPC would clash with the generated `connect` constructor; clients are
        // built with `AgentServiceClient::new(channel)` instead.
        .build_transport(false)
        .codec_path("crate::codec::StreamCodec")
        .compile_fds(fds.clone())?;
    // The same service with tonic's default codec, only for the benchmarks' bare-tonic baseline.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("baseline");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure().build_transport(false).out_dir(out).compile_fds(fds)?;
    Ok(())
}
