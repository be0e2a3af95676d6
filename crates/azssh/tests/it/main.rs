//! Integration tests: one binary that drives the real `azssh` executable and starts real servers
//! on ephemeral ports. `Test` is the builder every module uses.
// Tests say on stderr what they skipped (a missing sshd, ssh or SDK), as cargo shows it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod azure;
mod conventions;
mod emulator;
mod emulator_ssh;
mod fleet;
mod guest;
mod guest_ssh;
mod harness;
mod hostile_sftp;
mod keys;
mod limits;
mod private_vms;
mod readme;
mod repl;
mod runbooks;
mod safety_inputs;
mod script;
mod session;
mod sign_in;
mod ssh;
mod sshd;
mod terminal;
mod workflow;

pub use harness::Test;
