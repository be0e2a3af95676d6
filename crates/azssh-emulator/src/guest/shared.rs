//! `SharedGuest`: one guest shared by the emulator's ARM side (RunCommand, the extension) and
//! its SSH side (auth, exec, SFTP), which both hold it behind an `Arc` and call it with `&self`.
//! Its methods have the shapes of the two seams, `world::GuestRuntime` and
//! `guest_ssh::GuestAccess`, so implementing those traits is pure delegation.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use russh::keys::{PrivateKey, PublicKey};

use super::{Guest, GuestOutput};

#[derive(Debug)]
pub struct SharedGuest {
    guest: Mutex<Guest>,
    sftp_root: PathBuf,
}

impl SharedGuest {
    /// `sftp_root` is the per-VM sandbox the SFTP subsystem serves (`<root>/C` is `C:\`).
    pub fn new(guest: Guest, sftp_root: PathBuf) -> Self {
        SharedGuest {
            guest: Mutex::new(guest),
            sftp_root,
        }
    }

    /// The guest, for reads and test set-up. A panic while it was held cannot leave it half
    /// changed in a way that matters to a simulator, so a poisoned lock is simply taken over.
    pub fn lock(&self) -> MutexGuard<'_, Guest> {
        self.guest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// RunCommand's `RunPowerShellScript`, as SYSTEM.
    pub fn run_powershell(&self, script: &str) -> GuestOutput {
        self.lock().run_powershell(script)
    }

    /// RunCommand's `RunPowerShellScript` with its parameters (`-name value`).
    pub fn run_powershell_with(&self, script: &str, params: &[(String, String)]) -> GuestOutput {
        self.lock().run_powershell_with(script, params)
    }

    /// The `WindowsOpenSSH` 3.0 extension. It cannot fail in the model; the `Result` is the
    /// seam's, for a future fault.
    pub fn install_openssh_extension(&self) -> Result<(), String> {
        self.lock().install_openssh_extension();
        Ok(())
    }

    /// sshd installed and running.
    pub fn sshd_listening(&self) -> bool {
        self.lock().sshd_running()
    }

    /// Same as [`SharedGuest::sshd_listening`], under the SSH side's name.
    pub fn sshd_running(&self) -> bool {
        self.sshd_listening()
    }

    pub fn host_key(&self) -> PrivateKey {
        self.lock().host_key()
    }

    pub fn is_authorized(&self, user: &str, key: &PublicKey) -> bool {
        self.lock().is_authorized(user, key)
    }

    pub fn exec(&self, user: &str, command_line: &str) -> GuestOutput {
        self.lock().exec(user, command_line)
    }

    pub fn sftp_root(&self) -> PathBuf {
        self.sftp_root.clone()
    }
}
