//! `Test`: run the real `azssh` binary with arguments, environment, stdin and a temp dir, then
//! assert on stdout, stderr and the exit code (after casey/just's test builder).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Test {
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    expected_status: i32,
    stdout: Option<String>,
    stdout_contains: Vec<String>,
    stderr_contains: Vec<String>,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Self {
        Test {
            dir: tempfile::tempdir().expect("temp dir"),
            args: Vec::new(),
            env: Vec::new(),
            expected_status: 0,
            stdout: None,
            stdout_contains: Vec::new(),
            stderr_contains: Vec::new(),
        }
    }

    pub fn bin() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_azssh"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file into the test's temp dir (parents created).
    pub fn file(self, name: &str, text: &str) -> Self {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write file");
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub fn args(mut self, list: &[&str]) -> Self {
        self.args.extend(list.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Several variables, e.g. the emulator's `export`s (`Emu::env()`).
    pub fn envs(mut self, vars: Vec<(String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    /// `azssh ARGS` against the emulator: its `export`s set, as after `eval "$(azssh emulator)"`.
    /// The product's side of the one fixture (the emulator cannot know the binary).
    pub fn azssh(emu: &azssh_emulator::testing::Emu, args: &[&str]) -> Self {
        Test::new().envs(emu.env()).args(args)
    }

    pub fn status(mut self, code: i32) -> Self {
        self.expected_status = code;
        self
    }

    pub fn stdout(mut self, exact: &str) -> Self {
        self.stdout = Some(exact.into());
        self
    }

    pub fn stdout_contains(mut self, s: &str) -> Self {
        self.stdout_contains.push(s.into());
        self
    }

    pub fn stderr_contains(mut self, s: &str) -> Self {
        self.stderr_contains.push(s.into());
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(Self::bin());
        cmd.args(&self.args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("AZSSH_OUTPUT")
            .env_remove("RUST_BACKTRACE")
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join(".config"))
            .env("XDG_STATE_HOME", self.dir.path().join(".state"))
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs and checks every expectation; returns the output for further asserts.
    pub fn run(&self) -> Output {
        let out = self.command().output().expect("run azssh");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let ctx = format!(
            "args: {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            self.args
        );
        assert_eq!(
            out.status.code(),
            Some(self.expected_status),
            "wrong exit code\n{ctx}"
        );
        if let Some(exact) = &self.stdout {
            assert_eq!(&stdout, exact, "stdout differs\n{ctx}");
        }
        for s in &self.stdout_contains {
            assert!(stdout.contains(s.as_str()), "stdout lacks {s:?}\n{ctx}");
        }
        for s in &self.stderr_contains {
            assert!(stderr.contains(s.as_str()), "stderr lacks {s:?}\n{ctx}");
        }
        assert!(
            !stderr.contains("panicked at"),
            "a panic reached the user\n{ctx}"
        );
        assert!(
            !stderr.contains("RUST_BACKTRACE"),
            "a backtrace hint reached the user\n{ctx}"
        );
        out
    }
}

pub(crate) fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub(crate) fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[allow(dead_code)]
pub(crate) fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
