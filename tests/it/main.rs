//! Integration tests: one binary that drives the real `azssh` executable and starts real servers
//! on ephemeral ports. `Test` is the builder every module uses.

mod guest;
mod guest_ssh;
mod harness;
mod repl;
mod script;

pub use harness::Test;
