//! A local ARM emulator with emulated Windows guests.

pub mod guest_sftp;
pub mod guest_ssh;
pub mod rdp;
