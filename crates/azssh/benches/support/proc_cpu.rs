//! CPU time and page faults of a process from `/proc/<pid>/stat` (proc(5)), for the benches
//! that report them.

/// Linux's `USER_HZ`: `/proc/<pid>/stat` counts CPU time in these ticks, 100 a second on every
/// architecture it runs on.
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// Fields 3 onwards of `/proc/<pid>/stat`, as numbers; empty for a process that is gone.
fn stat_fields(pid: &str) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces; the fields after it
    // are plain.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect()
}

/// `(user + system of the process, user + system of its reaped children)` in ticks; zeros
/// for a process that is gone. `pid` may be `self`.
pub(crate) fn ticks(pid: &str) -> (u64, u64) {
    let f = stat_fields(pid);
    let field = |i: usize| f.get(i).copied().unwrap_or(0);
    // utime, stime, cutime, cstime are fields 14 to 17; the list starts at field 3.
    (field(11) + field(12), field(13) + field(14))
}

/// Minor page faults of the process so far (field 10, `minflt`): memory the allocator gave
/// back to the kernel and touched again; 0 for a process that is gone.
#[allow(dead_code)] // each bench compiles `support` on its own; not all read faults
pub(crate) fn minor_faults(pid: &str) -> u64 {
    stat_fields(pid).get(7).copied().unwrap_or(0)
}
