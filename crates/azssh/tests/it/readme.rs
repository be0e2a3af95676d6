//! The README tried as a new user would: every ```sh block runs in bash against the emulator
//! (the variables `azssh emulator` prints are set, and the ```rhai blocks whose first line names
//! a file, `// hello.rhai`, are written first). A block that cannot run here says why in the line
//! before it, `<!-- readme-test: skip REASON (...) -->`, with REASON one of `azure` (needs your
//! Azure resources or a sign-in), `terminal` (interactive) or `build` (builds azssh itself);
//! the skipped blocks are listed in the test's output. Sections others add are picked up by the
//! same rules: nothing here counts blocks by position.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use azssh_emulator::testing::Emu;

use crate::Test;
use crate::harness::{repo_file, stderr_of, stdout_of};

const SKIP_MARKER: &str = "<!-- readme-test: skip ";
const SKIP_REASONS: &[&str] = &["azure", "terminal", "build"];

#[derive(Debug)]
struct Block {
    lang: String,
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
    /// The skip marker's reason and explanation, when the line before the fence has one.
    skip: Option<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = readme.lines().enumerate().peekable();
    let mut previous = "";
    while let Some((i, line)) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            previous = line;
            continue;
        };
        let skip = previous
            .strip_prefix(SKIP_MARKER)
            .map(|rest| rest.trim_end_matches("-->").trim().to_string());
        let mut text = String::new();
        for (_, body) in lines.by_ref() {
            if body.starts_with("```") {
                break;
            }
            text.push_str(body);
            text.push('\n');
        }
        out.push(Block {
            lang: lang.trim().to_string(),
            line: i + 1,
            text,
            skip,
        });
        previous = "";
    }
    out
}

#[test]
fn every_shell_block_of_the_readme_runs_against_the_emulator() {
    let readme = std::fs::read_to_string(repo_file("../../README.md")).unwrap();
    let all = blocks(&readme);
    let t = Test::new();
    for b in all.iter().filter(|b| b.lang == "rhai") {
        if let Some(name) = b
            .text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// "))
            .filter(|n| n.ends_with(".rhai") && !n.contains('/'))
        {
            std::fs::write(t.path(name.trim()), &b.text).unwrap();
        }
    }
    let emu = Emu::builder().vms(4).start_blocking();
    let bin_dir = Test::bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = Vec::new();
    let mut skipped = Vec::new();
    for b in all
        .iter()
        .filter(|b| matches!(b.lang.as_str(), "sh" | "bash" | "shell"))
    {
        if let Some(why) = &b.skip {
            let reason = why.split_whitespace().next().unwrap_or_default();
            assert!(
                SKIP_REASONS.contains(&reason),
                "README line {}: skip reason `{reason}` is not one of {SKIP_REASONS:?}",
                b.line
            );
            skipped.push(format!("line {}: {why}", b.line));
            continue;
        }
        // A detached emulator the block started is stopped even when the block fails.
        let script = format!(
            "trap 'kill \"${{AZSSH_EMULATOR_PID:-}}\" 2>/dev/null || true' EXIT\n{}",
            b.text
        );
        // The harness's environment (temp HOME, NO_COLOR), the emulator's variables, and the
        // built azssh first on PATH.
        let harness = t.command();
        let mut bash = Command::new("timeout");
        bash.args(["300", "bash", "-e", "-o", "pipefail", "-c", &script])
            .current_dir(t.dir.path());
        for (k, v) in harness.get_envs() {
            match v {
                Some(v) => bash.env(k, v),
                None => bash.env_remove(k),
            };
        }
        bash.envs(emu.env())
            .env("PATH", &path)
            .env("AZSSH_STRICT_HOST_KEYS", "accept-new");
        let out = bash.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "README block at line {} failed:\n{}\n--- stdout\n{}\n--- stderr\n{}",
            b.line,
            b.text,
            stdout_of(&out),
            stderr_of(&out)
        );
        ran.push(b.line);
    }
    eprintln!(
        "README: ran the shell blocks at lines {ran:?}; skipped:\n  {}",
        skipped.join("\n  ")
    );
    assert!(
        ran.len() >= 3,
        "only {} README shell blocks ran: {ran:?}",
        ran.len()
    );
    assert!(
        all.iter()
            .any(|b| b.skip.is_none() && b.text.contains("azssh emulator")),
        "the emulator recipe must run, not be skipped"
    );
}

#[test]
fn skip_markers_are_read_from_the_line_before_the_fence() {
    let text = "intro\n<!-- readme-test: skip azure (your VMs) -->\n```sh\naz login\n```\n\n```sh\nazssh vms\n```\n";
    let b = blocks(text);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].skip.as_deref(), Some("azure (your VMs)"));
    assert_eq!(b[0].line, 3);
    assert!(b[1].skip.is_none());
    assert_eq!(b[1].text, "azssh vms\n");
}
