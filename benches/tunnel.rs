//! Tunnel throughput benchmark (placeholder until written).
fn main() {}
