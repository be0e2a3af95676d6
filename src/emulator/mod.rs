//! A local ARM emulator with emulated Windows guests.

pub mod guest;
pub mod powershell;
