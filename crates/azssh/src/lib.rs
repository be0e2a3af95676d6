//! azssh: a scriptable automation runtime for reaching Azure Windows VMs over SSH.
//!
//! # Layout
//! - `commands` — one file per subcommand; `cli` — clap definitions only.
//! - `script` — the Rhai engine (the one place that registers the API and the one place that
//!   blocks on async); `repl` and `fleet` drive it.
//! - `output` — the one place that prints; `error` — the top-level error and exit codes.
//! - The domain lives in `azssh-core` (`azure`, `ssh`, `windows`, `workflow`, re-exported here);
//!   the emulator in `azssh-emulator`, reached only through the `emulator` feature.
//!
//! Layers only call downward: commands → script/fleet/repl → azssh-core.

pub mod cli;
pub mod commands;
pub mod error;
pub mod fleet;
pub mod output;
pub mod query;
pub mod repl;
pub mod script;

pub use azssh_core::{azure, local_file, rdp, secret, ssh, windows, workflow};
#[cfg(feature = "emulator")]
pub use azssh_emulator as emulator;

use clap::Parser;

use crate::error::{AppError, exit};

/// Whether the verb spends its life moving one SSH session's data (a shell, a tunnel, a copy,
/// a proxied stream). russh decrypts every packet of a session in one task; with one async
/// worker, handing the data to the task that writes it out is a wake-up on the same thread
/// instead of a cross-thread one (a futex and an `epoll_wait` return per batch). Measured on
/// a tunnel pull (`benches/tunnel.rs`, which prints the client's CPU per GiB): 13 % less
/// client CPU with one worker (856 vs 984 ms/GiB; `ssh -L` used 832–888). Verbs
/// that run scripts, fleets or many sessions keep a worker per core.
fn carries_one_session(command: &cli::Command) -> bool {
    matches!(
        command,
        cli::Command::Connect(_)
            | cli::Command::Tunnel(_)
            | cli::Command::Rdp(_)
            | cli::Command::Cp(_)
            | cli::Command::Proxy(_)
    )
}

/// Keeps glibc's allocator from handing freed memory back to the kernel after every burst. A tunnel
/// pull frees up to 1 MiB of 32 KiB packets at once; the heap's top then exceeds glibc's 128 KiB
/// trim threshold, is returned, and the next packets fault it back in: 570–710 k page faults per
/// GiB pulled, against 2–3 k with these settings, and 0–17 % less client CPU per GiB (1 GiB A/B
/// pulls through `azssh tunnel`; `benches/tunnel.rs` prints both). A fixed trim threshold also
/// turns off glibc's sliding mmap threshold, so that is fixed too, above the 1 MiB tunnel reads and
/// SFTP buffers, which must not cost an `mmap` each. At most 16 MiB of freed heap stays resident
/// per arena. Only the verbs that carry one session's data are tuned: scripts and fleets keep
/// glibc's defaults (and their measured peak RSS). Other allocators (musl's, macOS's) are left as
/// they are.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters, under glibc's own arena locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

/// Runs azssh with `args` (program name first) and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    install_panic_hook();
    azssh_core::notice::set_sink(|level, message| {
        let level = match level {
            azssh_core::notice::Level::Info => output::Level::Info,
            azssh_core::notice::Level::Warn => output::Level::Warn,
        };
        output::log(level, message);
    });
    // Before anything can print: a credential given in the environment is scrubbed from every
    // output even when only a script reads it (`env("AZSSH_ACCESS_TOKEN")`).
    secret::register_env(&|k| std::env::var(k).ok());
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.global.verbose);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if carries_one_session(&cli.command) {
        tune_allocator();
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::print_error(&AppError::usage(
                format!("cannot start the async runtime: {e}"),
                None,
            ));
            return exit::FAILED;
        }
    };
    let result = runtime.block_on(commands::dispatch(cli));
    // Blocking script threads may still be winding down after a cancel; don't wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    let code = match result {
        Ok(()) => exit::OK,
        Err(err) => {
            output::print_error(&err);
            err.exit_code()
        }
    };
    // A `--query` that failed on the output printed nothing: that is a failure too.
    let code = match output::query_failure() {
        Some(e) => {
            output::print_error(&AppError::failed(&e));
            if code == exit::OK { exit::FAILED } else { code }
        }
        None => code,
    };
    // Output that never arrived (`-o json > /dev/full`) is a failure, whatever the run did.
    match output::write_failure() {
        Some(e) => {
            output::print_error(&AppError::failed(&e));
            if code == exit::OK { exit::FAILED } else { code }
        }
        None => code,
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "azssh=debug,warn",
        _ => "azssh=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AZSSH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| ScrubbingStderr(Vec::new()))
        .without_time()
        .try_init();
}

/// The log writer: collects one event's text and writes it to stderr scrubbed of registered
/// secrets (a token in a `Debug`-printed error or header must not reach a log).
struct ScrubbingStderr(Vec<u8>);

impl std::io::Write for ScrubbingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.0);
        let clean = secret::scrub(&text);
        let result = std::io::stderr().lock().write_all(clean.as_bytes());
        self.0.clear();
        result
    }
}

impl Drop for ScrubbingStderr {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

/// A bug must not greet the user with a Rust backtrace: one message, a hint, exit 1.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        output::status(&format!(
            "error: internal error: {what}{at}\nhint: this is a bug in azssh; please report it with the command you ran\n"
        ));
    }));
}
