//! The `azssh` binary: parses nothing itself, hands the arguments to the library and exits with its code.
fn main() {
    std::process::exit(azssh::run(std::env::args_os()));
}
