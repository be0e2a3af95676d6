//! The `azssh` binary: parses nothing itself, hands the arguments to the library and exits with its code.

/// mimalloc instead of glibc's malloc: every SSH packet passes through a few short-lived
/// buffers of up to 32 KiB, and glibc's heap trimming turns that churn into page faults and
/// page clearing on the data path (`benches/tunnel.rs` prints the client's CPU per GiB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(azssh::run(std::env::args_os()));
}
