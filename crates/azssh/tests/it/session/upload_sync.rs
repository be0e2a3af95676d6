//! Whether an upload is synced on the server, as the server itself saw it: the real sshd runs
//! OpenSSH's `sftp-server` logging at VERBOSE, which records each `open`, `fsync` and `close` by
//! path. By default each uploaded file is fsynced (`fsync@openssh.com`) before it is closed;
//! `s.upload(.., #{fsync: false})` and `azssh cp --no-fsync` skip that, as `sftp` and `scp` do.

use std::path::{Path, PathBuf};

use super::{json, script_with, verb};
use crate::sshd::{self, Sshd};

/// Debian's `openssh-sftp-server`, which `openssh-server` depends on.
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// An sshd whose SFTP subsystem logs every request to `log` (sftp-server's `-e` sends its log to
/// stderr; sshd runs the subsystem through the user's shell, which appends it to the file).
fn logging_sshd(test: &str, log: &Path) -> Option<Sshd> {
    let sshd = sshd::start_with(
        test,
        &format!(
            "Subsystem sftp {SFTP_SERVER} -e -l VERBOSE 2>>{}\n",
            log.display()
        ),
    )?;
    assert!(
        Path::new(SFTP_SERVER).exists(),
        "{test}: sshd is installed but {SFTP_SERVER} is not"
    );
    Some(sshd)
}

/// The log's lines that name `path` (sftp-server quotes it: `fsync "/x/y"`).
fn requests_for(log: &Path, path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let quoted = format!("\"{}\"", path.display());
    text.lines()
        .filter(|l| l.contains(&quoted))
        .map(|l| l.to_string())
        .collect()
}

fn has(lines: &[String], request: &str) -> bool {
    lines.iter().any(|l| l.contains(&format!("{request} \"")))
}

#[test]
fn script_upload_syncs_each_file_unless_fsync_is_false() {
    let logs = tempfile::tempdir().expect("tmp");
    let log = logs.path().join("sftp.log");
    let Some(sshd) = logging_sshd("upload sync (script)", &log) else {
        return;
    };
    let remote = tempfile::tempdir().expect("tmp");
    let synced: PathBuf = remote.path().join("synced.bin");
    let unsynced: PathBuf = remote.path().join("unsynced.bin");
    let payload: Vec<u8> = (0..700_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let test = script_with(
        &sshd,
        r#"
let s = ssh("127.0.0.1", opts);
let a = s.upload("payload.bin", ARGS.synced);
let b = s.upload("payload.bin", ARGS.unsynced, #{fsync: false});
let c = s.upload("payload.bin", ARGS.synced, #{fsync: true});
let wrong_type = "";
try { s.upload("payload.bin", ARGS.unsynced, #{fsync: "no"}); } catch (e) { wrong_type = e.message; }
let unknown = "";
try { s.upload("payload.bin", ARGS.unsynced, #{flush: false}); } catch (e) { unknown = e.message; }
#{a: a.bytes, b: b.bytes, c: c.bytes, wrong_type: wrong_type, unknown: unknown}
"#,
        &sshd.trusted_known_hosts(),
    )
    .arg("--arg")
    .arg(&format!("synced={}", synced.display()))
    .arg("--arg")
    .arg(&format!("unsynced={}", unsynced.display()));
    std::fs::write(test.path("payload.bin"), &payload).expect("payload");
    let v = json(&test.run());
    for k in ["a", "b", "c"] {
        assert_eq!(v[k], payload.len() as u64, "{k}: {v}");
    }
    assert_eq!(std::fs::read(&synced).expect("synced"), payload);
    assert_eq!(std::fs::read(&unsynced).expect("unsynced"), payload);
    assert_eq!(
        v["wrong_type"], "`upload` option `fsync` must be true or false, got a `string`",
        "{v}"
    );
    assert!(
        v["unknown"]
            .as_str()
            .is_some_and(|m| m.contains("`upload` has no option `flush`")),
        "{v}"
    );

    let synced_log = requests_for(&log, &synced);
    let unsynced_log = requests_for(&log, &unsynced);
    // Two synced uploads (the default and `fsync: true`), each fsynced before its close.
    let fsyncs = synced_log.iter().filter(|l| l.contains("fsync \"")).count();
    assert_eq!(fsyncs, 2, "{synced_log:#?}");
    let first_fsync = synced_log.iter().position(|l| l.contains("fsync \""));
    let first_close = synced_log.iter().position(|l| l.contains("close \""));
    assert!(first_fsync < first_close, "{synced_log:#?}");
    // `fsync: false`: written and closed, never fsynced (the refused calls sent nothing).
    assert!(has(&unsynced_log, "close"), "{unsynced_log:#?}");
    assert!(!has(&unsynced_log, "fsync"), "{unsynced_log:#?}");
}

#[test]
fn cp_verb_no_fsync_uploads_without_the_flush() {
    let logs = tempfile::tempdir().expect("tmp");
    let log = logs.path().join("sftp.log");
    let Some(sshd) = logging_sshd("upload sync (cp)", &log) else {
        return;
    };
    let remote = tempfile::tempdir().expect("tmp");
    let to = |name: &str| format!("rg-demo/web01:{}/{name}", remote.path().display());

    let plain = verb(&sshd, "cp").file("notes.txt", "synced by default\n");
    plain
        .args(&["notes.txt", &to("default.txt"), "-o", "json"])
        .run();
    let fast = verb(&sshd, "cp").file("notes.txt", "left to the page cache\n");
    let v = json(
        &fast
            .args(&["--no-fsync", "notes.txt", &to("fast.txt"), "-o", "json"])
            .run(),
    );
    assert_eq!(v["direction"], "upload", "{v}");
    assert_eq!(
        std::fs::read_to_string(remote.path().join("fast.txt")).expect("uploaded"),
        "left to the page cache\n"
    );
    let default_log = requests_for(&log, &remote.path().join("default.txt"));
    let fast_log = requests_for(&log, &remote.path().join("fast.txt"));
    assert!(has(&default_log, "fsync"), "{default_log:#?}");
    assert!(has(&fast_log, "close"), "{fast_log:#?}");
    assert!(!has(&fast_log, "fsync"), "{fast_log:#?}");

    // A download is never synced: asking for it not to be is a mistake, said in flags.
    verb(&sshd, "cp")
        .args(&["--no-fsync", &to("fast.txt"), "back.txt"])
        .status(1)
        .stderr_contains("`--no-fsync` applies to uploads only")
        .run();
}

/// A large synced upload is flushed while it is written: a second SFTP session opens the same
/// file without truncating it and fsyncs it as each quarter (at least 16 MiB) is acknowledged, and the upload's own
/// fsync still ends it. The file arrives byte-exact.
#[test]
fn large_synced_upload_is_flushed_early_from_a_second_session() {
    let logs = tempfile::tempdir().expect("tmp");
    let log = logs.path().join("sftp.log");
    let Some(sshd) = logging_sshd("upload early writeback", &log) else {
        return;
    };
    let remote = tempfile::tempdir().expect("tmp");
    let big: PathBuf = remote.path().join("big.bin");
    let len = 40 * 1024 * 1024 + 5;
    let payload: Vec<u8> = (0..len as u32).map(|i| (i * 31 % 253) as u8).collect();
    let test = script_with(
        &sshd,
        r#"
let s = ssh("127.0.0.1", opts);
s.upload("payload.bin", ARGS.big).bytes
"#,
        &sshd.trusted_known_hosts(),
    )
    .arg("--arg")
    .arg(&format!("big={}", big.display()));
    std::fs::write(test.path("payload.bin"), &payload).expect("payload");
    let v = json(&test.run());
    assert_eq!(v, len as u64);
    assert!(
        std::fs::read(&big).expect("uploaded") == payload,
        "byte-exact"
    );

    let lines = requests_for(&log, &big);
    let count = |request: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("{request} \"")))
            .count()
    };
    // The upload's open (create, truncate) and the flushing session's (write only).
    assert_eq!(count("open"), 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("open \"") && !l.contains("TRUNCATE")),
        "{lines:#?}"
    );
    assert_eq!(count("close"), 2, "{lines:#?}");
    // At least one early flush (at 16 and 32 MiB acknowledged) besides the final one.
    assert!(count("fsync") >= 2, "{lines:#?}");
}
