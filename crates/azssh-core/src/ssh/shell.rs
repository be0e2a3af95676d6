//! Interactive shell: a PTY sized like the local terminal, the terminal in raw mode while the
//! shell runs (restored by a guard on every exit path, panics included), window-size changes
//! passed on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::{ChannelMsg, Pty};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::connect::Session;
use super::error::SshError;

/// Puts the terminal in raw mode and takes it out again when dropped.
struct RawModeGuard;

impl RawModeGuard {
    fn enable() -> Result<RawModeGuard, SshError> {
        crossterm::terminal::enable_raw_mode()
            .map_err(|e| SshError::io("cannot put the terminal in raw mode", e))?;
        Ok(RawModeGuard)
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        if let Err(e) = crossterm::terminal::disable_raw_mode() {
            tracing::debug!("cannot restore the terminal: {e}");
        }
    }
}

fn terminal_size() -> (u32, u32) {
    crossterm::terminal::size()
        .map(|(c, r)| (u32::from(c), u32::from(r)))
        .unwrap_or((80, 24))
}

/// The ends of a shell driven by something other than the local terminal (tests, or a
/// future web console).
pub struct ShellIo<W> {
    /// `TERM` for the remote side, e.g. `xterm-256color`.
    pub term: String,
    /// (columns, rows).
    pub size: (u32, u32),
    /// Keystrokes; closing the sender sends EOF.
    pub input: mpsc::Receiver<Vec<u8>>,
    /// New (columns, rows) whenever the window changes.
    pub resize: mpsc::Receiver<(u32, u32)>,
    /// Everything the shell prints (a PTY merges stdout and stderr).
    pub output: W,
}

impl Session {
    /// Runs an interactive shell on the local terminal until it exits; returns its exit code.
    pub async fn shell(&self) -> Result<Option<u32>, SshError> {
        let (resize_tx, resize) = mpsc::channel(4);
        #[cfg(unix)]
        let watcher = {
            use tokio::signal::unix::{SignalKind, signal};
            let mut winch = signal(SignalKind::window_change())
                .map_err(|e| SshError::io("cannot watch the terminal size", e))?;
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if resize_tx.send(terminal_size()).await.is_err() {
                        break;
                    }
                }
            })
        };
        #[cfg(not(unix))]
        drop(resize_tx);

        let _raw = RawModeGuard::enable()?;
        let (_stdin, input) = StdinPump::start();
        let io = ShellIo {
            term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".to_string()),
            size: terminal_size(),
            input,
            resize,
            output: tokio::io::stdout(),
        };
        let result = self.shell_with(io).await;
        #[cfg(unix)]
        watcher.abort();
        result
    }

    /// Runs a shell on a PTY, wired to `io`, until it exits; returns its exit code.
    pub async fn shell_with<W>(&self, mut io: ShellIo<W>) -> Result<Option<u32>, SshError>
    where
        W: AsyncWrite + Unpin,
    {
        let channel = self.handle.channel_open_session().await?;
        let (cols, rows) = io.size;
        channel
            .request_pty(true, &io.term, cols, rows, 0, 0, &[(Pty::TTY_OP_END, 0)])
            .await?;
        channel.request_shell(true).await?;
        let (mut reader, writer) = channel.split();
        let (mut input_open, mut resize_open) = (true, true);
        let mut exit_code = None;
        loop {
            tokio::select! {
                input = io.input.recv(), if input_open => match input {
                    Some(bytes) => writer.data_bytes(bytes).await?,
                    None => {
                        input_open = false;
                        writer.eof().await?;
                    }
                },
                size = io.resize.recv(), if resize_open => match size {
                    Some((cols, rows)) => writer.window_change(cols, rows, 0, 0).await?,
                    None => resize_open = false,
                },
                msg = reader.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => write_out(&mut io.output, &data).await?,
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        write_out(&mut io.output, &data).await?;
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => exit_code = Some(exit_status),
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
            }
        }
        Ok(exit_code)
    }
}

/// Reads the terminal on a thread of its own and stops within 100 ms of being dropped.
///
/// Not `tokio::io::stdin()`: its blocking read outlives the shell, so the runtime (and the
/// process) would wait for one more keypress on exit, and that keypress would be stolen from
/// whatever reads the terminal next (the REPL).
struct StdinPump {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StdinPump {
    /// The guard that stops the thread, and the receiver of what it reads.
    fn start() -> (StdinPump, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                match read_stdin(&mut buf) {
                    Some(0) => break,
                    Some(n) if tx.blocking_send(buf[..n].to_vec()).is_err() => break,
                    _ => {}
                }
            }
        });
        let pump = StdinPump {
            stop,
            thread: Some(thread),
        };
        (pump, rx)
    }
}

impl Drop for StdinPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits up to 100 ms for input: `None` when there was none, `Some(0)` at end of input.
#[cfg(unix)]
fn read_stdin(buf: &mut [u8]) -> Option<usize> {
    let mut fds = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and `read` writes at most `buf.len()` bytes into `buf`.
    unsafe {
        // EINTR (SIGWINCH on every resize) and timeouts just mean "try again".
        if libc::poll(&mut fds, 1, 100) <= 0 {
            return None;
        }
        if fds.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Some(0);
        }
        let n = libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len());
        if n < 0 {
            let again = std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
            return if again { None } else { Some(0) };
        }
        Some(usize::try_from(n).unwrap_or(0))
    }
}

#[cfg(not(unix))]
fn read_stdin(buf: &mut [u8]) -> Option<usize> {
    use std::io::Read;
    Some(std::io::stdin().read(buf).unwrap_or(0))
}

async fn write_out<W: AsyncWrite + Unpin>(out: &mut W, data: &[u8]) -> Result<(), SshError> {
    out.write_all(data)
        .await
        .map_err(|e| SshError::io("cannot write to the terminal", e))?;
    out.flush()
        .await
        .map_err(|e| SshError::io("cannot write to the terminal", e))
}
