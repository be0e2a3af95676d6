//! The journal: one JSON line per VM, appended and fsynced as each VM starts and finishes, so
//! a run killed at any moment can be resumed without redoing finished work.
//!
//! A `running` line is written (and synced) before a VM's script starts. If the process dies
//! before that VM's `ok`/`failed` line, `--resume` cannot know how far the script got (Azure's
//! RunCommand action has no record of past runs to ask), so it records the VM as failed with
//! kind `fleet.interrupted` instead of running it again; `--retry-failed` reruns such VMs when
//! the script is safe to repeat. A VM whose RunCommand completed is never sent it again.
//!
//! Results are the scripts' own values: scripts must not return secrets. Keys that look like
//! secrets (`token`, `password`, `secret`, `private_key`) are redacted anyway.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::FleetError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started, not finished yet (only ever the last word for a VM if the run died).
    Running,
    Ok,
    Failed,
}

/// Why a VM failed, as scripts see errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub duration_ms: u64,
    /// RFC 3339, UTC.
    pub finished_at: String,
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An open journal file, held exclusively until dropped. Writes are whole lines, and `append`
/// returns only once its line is on disk (`sync_data`), so a crash loses at most lines whose
/// `append` had not returned (a torn last one `load` then skips).
///
/// Group commit: one `sync_data` makes durable every line written before it started, so lines
/// appended while a sync runs wait for the next one and share it, instead of each taking its
/// own turn under the lock (a sync costs milliseconds; 32 VMs finishing together paid 32 in a
/// row). What a caller is promised is unchanged.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    state: std::sync::Mutex<Writer>,
    /// Woken when a sync ends (or fails).
    synced: std::sync::Condvar,
    /// A second handle on the same open file, synced outside the lock so lines keep being
    /// written meanwhile (`fdatasync` covers every write to the file made before it).
    sync_handle: File,
    /// The sidecar lock record (regular-file journals only); removed on drop.
    _lock: Option<LockRecord>,
}

/// The appending side of a journal, under its lock: lines are numbered as written.
#[derive(Debug)]
struct Writer {
    file: File,
    /// Lines written so far.
    written: u64,
    /// Lines known to be on disk (every line up to this number).
    durable: u64,
    /// A sync is running; its caller will wake the others.
    syncing: bool,
    /// Syncs done (lines written ÷ syncs is what group commit saves).
    syncs: u64,
    /// A write or sync failed: what is on disk is unknown from here on (after a failed
    /// `fsync` the kernel may have dropped the dirty pages), so every later append fails too.
    broken: Option<String>,
}

/// Who holds a journal: `JOURNAL.lock` beside it names the process, and the holder rewrites it
/// every `HEARTBEAT` so a holder on another machine can be told from a dead one.
///
/// `flock` on the journal itself is the lock; the record exists because on shared volumes
/// (NFS, SMB, a Kubernetes `ReadWriteMany` claim) `flock` may be advisory, local to one node,
/// or a no-op, so two pods of one Job could both "hold" it and run every VM twice. A record
/// from this host names a pid we can check; one from another host counts until it is
/// `STALE` without a heartbeat, so a Job pod restarted after a crash resumes a minute later.
#[derive(Debug)]
struct LockRecord {
    path: PathBuf,
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    beat: Option<std::thread::JoinHandle<()>>,
}

const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);
const STALE: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether `pid` on this host still runs (where we cannot tell, assume it does).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

fn lock_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl LockRecord {
    /// Takes the record, or says who holds it.
    fn take(journal: &Path) -> Result<LockRecord, FleetError> {
        let path = lock_path(journal);
        let me = Holder {
            pid: std::process::id(),
            host: hostname(),
        };
        if let Ok(text) = crate::local_file::read_text(&path, 4096, "journal lock record") {
            let fresh = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < STALE);
            if let Ok(other) = serde_json::from_str::<Holder>(&text) {
                let held = if other.host == me.host {
                    other.pid != me.pid && alive(other.pid)
                } else {
                    fresh
                };
                if held {
                    return Err(FleetError::JournalLocked {
                        path: journal.display().to_string(),
                        holder: format!("pid {} on {}", other.pid, other.host),
                    });
                }
            }
        }
        let body = serde_json::to_string(&me).unwrap_or_default();
        std::fs::write(&path, &body).map_err(|e| FleetError::Journal {
            path: path.display().to_string(),
            reason: e.to_string().to_lowercase(),
        })?;
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let (beat_path, beat_stop) = (path.clone(), stop.clone());
        let beat = std::thread::Builder::new()
            .name("azssh-journal-lock".into())
            .spawn(move || {
                let (done, wake) = &*beat_stop;
                let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                while !*done {
                    let (d, _) = wake
                        .wait_timeout(done, HEARTBEAT)
                        .unwrap_or_else(|e| e.into_inner());
                    done = d;
                    if !*done {
                        // Rewriting refreshes the mtime other hosts judge staleness by.
                        let _ = std::fs::write(&beat_path, &body);
                    }
                }
            })
            .ok();
        Ok(LockRecord { path, stop, beat })
    }
}

impl Drop for LockRecord {
    fn drop(&mut self) {
        let (done, wake) = &*self.stop;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(beat) = self.beat.take() {
            let _ = beat.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Journal {
    /// Opens for appending, exclusively. A fresh run refuses a journal that already holds
    /// entries: mixing two runs' lines would make a later `--resume` skip VMs the second run
    /// never touched. A second run on a journal in use refuses, naming the holder: both would
    /// otherwise run every VM the journal does not yet mark done.
    pub fn open(path: &Path, resume: bool) -> Result<Journal, FleetError> {
        let err = |e: std::io::Error| FleetError::Journal {
            path: path.display().to_string(),
            reason: e.to_string().to_lowercase(),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let regular = file.metadata().map_err(err)?.is_file();
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder =
                    crate::local_file::read_text(&lock_path(path), 4096, "journal lock record")
                        .ok()
                        .and_then(|t| serde_json::from_str::<Holder>(&t).ok())
                        .map_or_else(
                            || "another azssh process".into(),
                            |h| format!("pid {} on {}", h.pid, h.host),
                        );
                return Err(FleetError::JournalLocked {
                    path: path.display().to_string(),
                    holder,
                });
            }
            // Filesystems without flock (some FUSE and SMB mounts): the lock record still guards.
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::debug!("cannot flock the journal: {e}");
            }
        }
        let lock = if regular {
            Some(LockRecord::take(path)?)
        } else {
            None
        };
        let len = file.metadata().map_err(err)?.len();
        if !resume && regular && len > 0 {
            return Err(FleetError::JournalExists {
                path: path.display().to_string(),
            });
        }
        if regular && len > 0 && !ends_with_newline(&mut file).map_err(err)? {
            // A crash mid-write left a torn last line: end it, so the next record starts on a
            // line of its own instead of being glued to (and lost with) the fragment.
            file.write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(err)?;
        }
        let sync_handle = file.try_clone().map_err(err)?;
        Ok(Journal {
            path: path.to_path_buf(),
            state: std::sync::Mutex::new(Writer {
                file,
                written: 0,
                durable: 0,
                syncing: false,
                syncs: 0,
                broken: None,
            }),
            synced: std::sync::Condvar::new(),
            sync_handle,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and waits until it is on disk: blocks the calling thread for a sync
    /// (milliseconds), so async callers run it on a blocking thread.
    pub fn append(&self, entry: &Entry) -> Result<(), FleetError> {
        let fail = |reason: String| FleetError::Journal {
            path: self.path.display().to_string(),
            reason,
        };
        let mut line = serde_json::to_string(entry).map_err(|e| fail(e.to_string()))?;
        line.push('\n');
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = &w.broken {
            return Err(fail(reason.clone()));
        }
        if let Err(e) = w.file.write_all(line.as_bytes()) {
            let reason = e.to_string().to_lowercase();
            w.broken = Some(reason.clone());
            return Err(fail(reason));
        }
        w.written += 1;
        let mine = w.written;
        loop {
            if w.durable >= mine {
                return Ok(());
            }
            if let Some(reason) = &w.broken {
                return Err(fail(reason.clone()));
            }
            if w.syncing {
                // Someone else's sync is running; it may not cover this line: wait, look again.
                w = self.synced.wait(w).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            w.syncing = true;
            let upto = w.written;
            drop(w);
            let synced = self.sync_handle.sync_data();
            w = self.state.lock().unwrap_or_else(|e| e.into_inner());
            w.syncing = false;
            w.syncs += 1;
            match synced {
                Ok(()) => w.durable = w.durable.max(upto),
                Err(e) => w.broken = Some(e.to_string().to_lowercase()),
            }
            self.synced.notify_all();
        }
    }

    /// Lines written and syncs done so far.
    pub fn counts(&self) -> (u64, u64) {
        let w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (w.written, w.syncs)
    }
}

fn ends_with_newline(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// The last word on each VM (keyed by lower-cased id). Unreadable lines (a line torn by a
/// crash) are skipped with a warning count.
pub fn load(path: &Path) -> Result<(HashMap<String, Entry>, usize), FleetError> {
    let text = match crate::local_file::read_text(path, crate::local_file::cap::JOURNAL, "journal")
    {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok((HashMap::new(), 0)),
        Err(e) => {
            return Err(FleetError::Journal {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let mut last = HashMap::new();
    let mut torn = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => {
                last.insert(e.id.to_ascii_lowercase(), e);
            }
            Err(_) => torn += 1,
        }
    }
    Ok((last, torn))
}

/// What `--resume` does with a VM, given its last journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAction {
    Run,
    Skip,
    /// Died mid-run: record it as interrupted (failed), don't run it.
    MarkInterrupted,
}

pub fn resume_action(last: Option<&Entry>, retry_failed: bool) -> ResumeAction {
    match last.map(|e| e.status) {
        None => ResumeAction::Run,
        Some(Status::Ok) => ResumeAction::Skip,
        Some(Status::Failed | Status::Running) if retry_failed => ResumeAction::Run,
        Some(Status::Failed) => ResumeAction::Skip,
        Some(Status::Running) => ResumeAction::MarkInterrupted,
    }
}

/// Key fragments that mark a secret anywhere in a key, compared with `-`/`_` removed and
/// lower-cased, so `apiKey`, `api_key` and `X-Api-Key` all match.
const SECRET_WORDS: [&str; 10] = [
    "token",
    "password",
    "passwd",
    "secret",
    "privatekey",
    "apikey",
    "connectionstring",
    "authorization",
    "credential",
    "cookie",
];

/// Short names that mark a secret only as a whole word of the key (`sas_url`, `adminPwd`,
/// `x-ms-sig`), so `signal` or `assigned` are kept.
const SECRET_SHORT_WORDS: [&str; 3] = ["pwd", "sas", "sig"];

/// The words of a key: split at `-`, `_`, `.`, spaces and camelCase boundaries, lower-cased.
fn key_words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn is_secret_key(key: &str) -> bool {
    let flat: String = key
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_WORDS.iter().any(|w| flat.contains(w))
        || key_words(key)
            .iter()
            .any(|w| SECRET_SHORT_WORDS.contains(&w.as_str()))
}

/// Replaces the values of keys that look like secrets, at any depth, and every registered
/// secret value (the access token, SSH passwords and passphrases: `secret::scrub`) inside the
/// remaining strings, whatever key they sit under.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) {
                    *v = Value::String(crate::secret::REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if let std::borrow::Cow::Owned(clean) = crate::secret::scrub(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(id: &str, status: Status) -> Entry {
        Entry {
            id: id.into(),
            name: "vm".into(),
            status,
            result: None,
            error: None,
            attempts: 1,
            duration_ms: 5,
            finished_at: now_rfc3339(),
        }
    }

    #[test]
    fn journal_keeps_last_word_and_skips_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let j = Journal::open(&path, false).unwrap();
        j.append(&entry("/A", Status::Running)).unwrap();
        j.append(&entry("/a", Status::Ok)).unwrap();
        j.append(&entry("/b", Status::Running)).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\": \"/c\", \"sta").unwrap();
        let (last, torn) = load(&path).unwrap();
        assert_eq!(torn, 1);
        assert_eq!(last["/a"].status, Status::Ok);
        assert_eq!(last["/b"].status, Status::Running);
    }

    /// Group commit must not weaken the promise: an append returns only after a sync that
    /// began once its line was written, so one writer alone syncs once per line.
    #[test]
    fn each_append_returns_only_after_a_sync_covering_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let j = Journal::open(&path, false).unwrap();
        for i in 0..5 {
            j.append(&entry(&format!("/vm{i}"), Status::Running))
                .unwrap();
            assert_eq!(j.counts(), (i + 1, i + 1));
        }
    }

    /// Many VMs finishing at once: every append returns with its line whole in the file, and
    /// the syncs never outnumber the lines (concurrent ones share a sync).
    #[test]
    fn concurrent_appends_share_syncs_and_keep_every_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let j = std::sync::Arc::new(Journal::open(&path, false).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (j, path) = (j.clone(), path.clone());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let id = format!("/t{t}/vm{i}");
                        j.append(&entry(&id, Status::Ok)).unwrap();
                        let text = std::fs::read_to_string(&path).unwrap();
                        assert!(text.contains(&format!("\"{id}\"")), "{id} not written");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (written, syncs) = j.counts();
        assert_eq!(written, 200);
        assert!((1..=200).contains(&syncs), "{syncs} syncs");
        drop(j);
        let (last, torn) = load(&path).unwrap();
        assert_eq!((last.len(), torn), (200, 0));
    }

    /// After a failed write nothing is known about the file: every later append must fail
    /// too, so the scheduler stops starting VMs rather than trusting a journal with holes.
    #[test]
    fn a_failed_write_fails_every_later_append() {
        // /dev/full refuses every write with ENOSPC (Linux).
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let j = Journal::open(full, false).unwrap();
        let first = j.append(&entry("/a", Status::Running)).unwrap_err();
        assert!(first.to_string().contains("no space"), "{first}");
        let second = j.append(&entry("/b", Status::Running)).unwrap_err();
        assert_eq!(first.to_string(), second.to_string());
    }

    #[test]
    fn fresh_run_refuses_a_used_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        Journal::open(&path, false)
            .unwrap()
            .append(&entry("/a", Status::Ok))
            .unwrap();
        assert!(matches!(
            Journal::open(&path, false),
            Err(FleetError::JournalExists { .. })
        ));
        assert!(Journal::open(&path, true).is_ok());
    }

    #[test]
    fn resume_skips_done_and_marks_interrupted() {
        let ok = entry("/a", Status::Ok);
        let failed = entry("/a", Status::Failed);
        let running = entry("/a", Status::Running);
        assert_eq!(resume_action(None, false), ResumeAction::Run);
        assert_eq!(resume_action(Some(&ok), true), ResumeAction::Skip);
        assert_eq!(resume_action(Some(&failed), false), ResumeAction::Skip);
        assert_eq!(resume_action(Some(&failed), true), ResumeAction::Run);
        assert_eq!(
            resume_action(Some(&running), false),
            ResumeAction::MarkInterrupted
        );
    }

    #[test]
    fn journal_redacts_new_secret_key_names() {
        let mut v = json!({
            "passwd": "a", "adminPwd": "b", "api_key": "c", "apiKey": "d", "X-Api-Key": "e",
            "sas": "f", "sas_url": "g", "sig": "h", "connection_string": "i",
            "ConnectionString": "j", "Authorization": "k", "credentials": "l", "set-cookie": "m",
            "signal": "kept", "assigned": "kept", "design": "kept", "passage": "kept"
        });
        redact(&mut v);
        for (k, val) in v.as_object().into_iter().flatten() {
            let want = if val == "kept" { "kept" } else { "<redacted>" };
            assert_eq!(val, want, "{k}");
        }
        assert_eq!(v["signal"], "kept");
        assert_eq!(v["passwd"], "<redacted>");
    }

    #[test]
    fn journal_scrubs_registered_secrets_under_any_key() {
        crate::secret::register("journal-unit-test-token-0123456789");
        let mut v = json!({"out": ["x journal-unit-test-token-0123456789 y"], "note": {"n": "journal-unit-test-token-0123456789"}});
        redact(&mut v);
        assert_eq!(
            v,
            json!({"out": ["x <redacted> y"], "note": {"n": "<redacted>"}})
        );
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut v = json!({"user": "a", "Password": "p", "nested": [{"access_token": "t", "privateKey": "k"}]});
        redact(&mut v);
        assert_eq!(
            v,
            json!({"user": "a", "Password": "<redacted>", "nested": [{"access_token": "<redacted>", "privateKey": "<redacted>"}]})
        );
    }
}
