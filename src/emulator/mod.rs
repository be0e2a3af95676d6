//! A local ARM emulator with emulated Windows guests.

pub mod guest;
pub mod guest_sftp;
pub mod guest_ssh;
pub mod powershell;
pub mod rdp;
