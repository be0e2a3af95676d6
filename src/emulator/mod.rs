//! A local ARM emulator with emulated Windows guests.
