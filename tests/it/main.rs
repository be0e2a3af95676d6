//! Integration tests: one binary that drives the real `azssh` executable.
mod ssh;
mod sshd;
