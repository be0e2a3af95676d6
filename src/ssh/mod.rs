//! SSH client on russh.
pub mod keys;
