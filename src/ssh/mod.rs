//! SSH client on russh.
