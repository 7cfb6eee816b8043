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
        .compile_fds(fds)?;
    Ok(())
}
