//! Results longer than RunCommand's 4096-byte output tail, end to end: `azssh audit` over a VM
//! with 60 keys reports every one, and a paged listing that stops between pages (killed, or
//! failing) leaves no snapshot behind for long: the client discards it on a failure, and the
//! next paged script sweeps one a killed process left once it is stale.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{World, have_openssh, openssh_fingerprint, pubfile, world_with_keys};
use crate::harness::{Test, stderr_of};

/// The page snapshots on the guest (`C:\ProgramData\ssh\azssh-keys-*.b64`), by name.
fn snapshots(w: &World) -> Vec<String> {
    let g = w.emu.guests().shared(&w.rg, &w.name).unwrap();
    let out = g.run_powershell(
        "Get-ChildItem -LiteralPath (Join-Path $env:ProgramData 'ssh') -Filter 'azssh-keys-*.b64' -Name",
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Starts `azssh keys list` and waits until its first page's snapshot is on the guest; the
/// running child, the snapshot's name and the `Test` (whose folder the child runs in).
fn list_until_first_page(w: &World) -> (std::process::Child, String, Test) {
    let t = w.keys("list", &[]);
    let mut child = t
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(name) = snapshots(w).pop() {
            return (child, name, t);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the listing ended ({status}) before its first page was seen");
        }
        assert!(Instant::now() < deadline, "no snapshot after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_of_a_vm_with_more_keys_than_the_runcommand_output_tail_reports_every_key() {
    if !have_openssh() {
        return;
    }
    // 60 keys: the audit's result is ~11 KB, well past RunCommand's 4096-byte output tail.
    let (w, keys) = world_with_keys(60).await;
    let known = pubfile(&keys[0]);
    let report = w
        .run(&["audit", "-g", &w.rg, "-n", &w.name, "--known-key", &known])
        .await;
    let expected: Vec<String> = keys
        .iter()
        .map(|k| openssh_fingerprint(Path::new(&pubfile(k))))
        .collect();
    let files = report["key_files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{report}");
    assert_eq!(files[0]["keys"], 60, "{report}");
    assert_eq!(
        files[0]["fingerprints"],
        json!(expected),
        "every key, in order"
    );
    let unknown: Vec<&str> = report["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "keys.unknown")
        .map(|d| d["detail"].as_str().unwrap())
        .collect();
    assert_eq!(unknown.len(), 59, "all but the known key: {unknown:?}");
    assert!(unknown.iter().any(|d| d.contains("key-59")), "{unknown:?}");
    let runs = w.emu.handle.stats().run_commands.get(&w.name).copied();
    assert!(runs.unwrap_or(0) >= 3, "paged: {runs:?} RunCommands");
    assert_eq!(
        snapshots(&w),
        Vec::<String>::new(),
        "the last page deletes it"
    );

    // A repair reads the key files twice (before and after): paged the same way.
    let dry = w
        .run(&["repair", "-g", &w.rg, "-n", &w.name, "--dry-run"])
        .await;
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(snapshots(&w), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_killed_between_pages_leaves_a_snapshot_the_next_operation_sweeps_once_stale() {
    if !have_openssh() {
        return;
    }
    let (w, _keys) = world_with_keys(60).await;
    let (mut child, left, _t) = list_until_first_page(&w);
    // Killed like Ctrl-C twice or a lost terminal: the process can clean nothing up.
    child.kill().unwrap();
    child.wait().unwrap();
    // A RunCommand already sent may still complete on the guest; none of them is the last page.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        snapshots(&w),
        std::slice::from_ref(&left),
        "the interrupted listing's snapshot"
    );

    // A young snapshot may be another operator's listing in progress: left alone.
    let rows = w.run(&["keys", "list", "-g", &w.rg, "-n", &w.name]).await;
    assert_eq!(rows.as_array().unwrap().len(), 60);
    assert_eq!(snapshots(&w), std::slice::from_ref(&left), "not yet stale");

    // Half an hour later it is abandoned: the next operation touching keys removes it.
    w.on_guest(&format!(
        "[IO.File]::SetLastWriteTimeUtc((Join-Path $env:ProgramData 'ssh\\{left}'), [DateTime]::UtcNow.AddMinutes(-31))"
    ));
    let report = w.run(&["audit", "-g", &w.rg, "-n", &w.name]).await;
    assert_eq!(report["key_files"][0]["keys"], 60, "{report}");
    assert_eq!(snapshots(&w), Vec::<String>::new(), "swept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_failing_between_pages_discards_its_snapshot() {
    if !have_openssh() {
        return;
    }
    let (w, _keys) = world_with_keys(60).await;
    let (child, name, _t) = list_until_first_page(&w);
    // The listing is held still (SIGSTOP) while the snapshot is replaced: left running, it could
    // read every page before the replacement on a machine that delays this test, and succeed.
    // SAFETY: kill(2) on our own child's pid; no memory is shared.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) }, 0);
    // The snapshot is replaced under the listing by a longer one: the next page does not
    // belong to the listing the first one announced (and is not a last page, so the guest
    // keeps the file).
    w.on_guest(&format!(
        "[IO.File]::WriteAllText((Join-Path $env:ProgramData 'ssh\\{name}'), '{}')",
        "QUJD".repeat(10_000)
    ));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGCONT) }, 0);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(
        snapshots(&w),
        Vec::<String>::new(),
        "the client discarded the snapshot: {}",
        stderr_of(&out)
    );
}
