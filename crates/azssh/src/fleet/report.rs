//! The end of a fleet run: a summary on stderr (counts, slowest VMs, failures grouped by
//! identical error, as `clush -b` groups identical output) and the per-VM results on stdout in
//! the chosen format (table, JSON, JSON lines, JUnit XML for CI dashboards).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::journal::{Entry, Status};
use super::targets::Target;
use crate::azure::budget::BudgetSnapshot;
use crate::output::OutputFormat;
use azssh_core::error::kind;

/// Everything the run knows at the end.
#[derive(Debug, Default)]
pub struct Report {
    /// The last word on every VM this run covered, in target order (resumed ones included).
    pub entries: Vec<Entry>,
    /// VMs never started (Ctrl-C or `--max-fail`).
    pub not_started: Vec<Target>,
    /// VMs skipped because the journal already had them.
    pub resumed: usize,
    /// Why new VMs stopped being started, when they did.
    pub stopped: Option<String>,
    pub elapsed: Duration,
    pub budget: BudgetSnapshot,
}

impl Report {
    pub fn ok(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.status == Status::Ok)
            .count()
    }
    pub fn failed(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.status != Status::Ok)
            .count()
    }
    /// Exit status 0 only when every VM is ok.
    pub fn all_ok(&self) -> bool {
        self.failed() == 0 && self.not_started.is_empty()
    }

    /// The human summary for stderr.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "fleet: {} VMs: {} ok, {} failed, {} not started",
            self.entries.len() + self.not_started.len(),
            self.ok(),
            self.failed(),
            self.not_started.len()
        );
        if self.resumed > 0 {
            s.push_str(&format!(" ({} taken from the journal)", self.resumed));
        }
        s.push_str(&format!(
            " in {:.1}s; ARM: {} requests, {} throttled (429), {} retried\n",
            self.elapsed.as_secs_f64(),
            self.budget.requests_sent,
            self.budget.throttled,
            self.budget.retries
        ));
        if let Some(why) = &self.stopped {
            s.push_str(&format!("stopped starting new VMs: {why}\n"));
        }
        let mut slow: Vec<&Entry> = self.entries.iter().filter(|e| e.attempts > 0).collect();
        slow.sort_by_key(|e| std::cmp::Reverse(e.duration_ms));
        if !slow.is_empty() {
            let list: Vec<String> = slow
                .iter()
                .take(5)
                .map(|e| format!("{} {:.1}s", e.name, e.duration_ms as f64 / 1000.0))
                .collect();
            s.push_str(&format!("slowest: {}\n", list.join(", ")));
        }
        for (error, names) in self.failure_groups() {
            s.push_str(&format!(
                "---------------\n{} ({})\n---------------\n{error}\n",
                names.join(", "),
                names.len()
            ));
        }
        s
    }

    /// Failed VMs grouped by identical `kind: message` (and hint), largest group first.
    pub fn failure_groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self.entries.iter().filter(|e| e.status != Status::Ok) {
            let text = match &e.error {
                Some(err) => {
                    let mut t = format!("{}: {}", err.kind, err.message);
                    if let Some(h) = &err.hint {
                        t.push_str(&format!("\nhint: {h}"));
                    }
                    t
                }
                None => "no error recorded".into(),
            };
            groups.entry(text).or_default().push(e.name.clone());
        }
        let mut out: Vec<(String, Vec<String>)> = groups.into_iter().collect();
        out.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));
        out
    }

    /// Per-VM rows: the journal entries, then the VMs never started.
    pub fn rows(&self) -> Vec<Value> {
        let mut rows: Vec<Value> = self
            .entries
            .iter()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            .collect();
        rows.extend(
            self.not_started
                .iter()
                .map(|t| json!({"id": t.id, "name": t.name, "status": "not_started"})),
        );
        rows
    }

    /// The structured output for stdout.
    pub fn render(&self, format: OutputFormat) -> String {
        // `--query` sees the rows `-o json` prints, whatever the format (as `az --query`).
        let rows = |rows: Vec<Value>| crate::output::queried(&Value::Array(rows));
        match format {
            OutputFormat::Junit => self.junit(),
            OutputFormat::Table if !crate::output::query_active() => {
                crate::output::render_table(&Value::Array(self.table_rows()))
            }
            other => rows(self.rows())
                .map(|v| crate::output::render(&v, other))
                .unwrap_or_default(),
        }
    }

    fn table_rows(&self) -> Vec<Value> {
        self.rows()
            .into_iter()
            .map(|r| {
                let outcome = match (r.get("error"), r.get("result")) {
                    (Some(err), _) => format!(
                        "{}: {}",
                        err["kind"].as_str().unwrap_or_default(),
                        err["message"].as_str().unwrap_or_default()
                    ),
                    (None, Some(Value::String(s))) => s.clone(),
                    (None, Some(v)) => v.to_string(),
                    (None, None) => String::new(),
                };
                let group = r["id"].as_str().map(resource_group_of).unwrap_or_default();
                json!({
                    "name": r["name"],
                    "resource_group": group,
                    "status": r["status"],
                    "attempts": r.get("attempts").cloned().unwrap_or(Value::Null),
                    "seconds": r.get("duration_ms").and_then(Value::as_u64)
                        .map(|ms| format!("{:.1}", ms as f64 / 1000.0)),
                    // Whole (one line): the table fits the terminal's width, or the
                    // reader's pager scrolls; a cut JSON outcome could not be read at all.
                    "outcome": outcome.lines().collect::<Vec<_>>().join(" "),
                })
            })
            .collect()
    }

    /// JUnit XML: one test suite, one test case per VM (`classname` = resource group).
    pub fn junit(&self) -> String {
        let failures = self.failed();
        let skipped = self.not_started.len();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x.push_str(&format!(
            "<testsuites>\n<testsuite name=\"azssh fleet\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
            self.entries.len() + skipped,
            self.elapsed.as_secs_f64()
        ));
        for e in &self.entries {
            let group = resource_group_of(&e.id);
            x.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&group),
                xml_escape(&e.name),
                e.duration_ms as f64 / 1000.0
            ));
            match (&e.status, &e.error) {
                (Status::Ok, _) => x.push_str("/>\n"),
                (_, err) => {
                    let (kind, message) = err
                        .as_ref()
                        .map(|e| (e.kind.as_str(), e.message.as_str()))
                        .unwrap_or((kind::fleet::UNKNOWN, "no error recorded"));
                    x.push_str(&format!(
                        ">\n    <failure type=\"{}\" message=\"{}\"/>\n  </testcase>\n",
                        xml_escape(kind),
                        xml_escape(message)
                    ));
                }
            }
        }
        for t in &self.not_started {
            x.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\">\n    <skipped message=\"not started\"/>\n  </testcase>\n",
                xml_escape(&t.resource_group),
                xml_escape(&t.name)
            ));
        }
        x.push_str("</testsuite>\n</testsuites>\n");
        x
    }
}

fn resource_group_of(id: &str) -> String {
    super::targets::Target::from_id(id)
        .map(|t| t.resource_group)
        .unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            '\n' => "&#10;".to_string(),
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::journal::ErrorInfo;

    fn entry(name: &str, status: Status, error: Option<(&str, &str)>, ms: u64) -> Entry {
        Entry {
            id: format!(
                "/subscriptions/s/resourceGroups/rg-x/providers/Microsoft.Compute/virtualMachines/{name}"
            ),
            name: name.into(),
            status,
            result: (status == Status::Ok).then(|| json!({"changed": true})),
            error: error.map(|(k, m)| ErrorInfo {
                kind: k.into(),
                message: m.into(),
                hint: None,
            }),
            attempts: 1,
            duration_ms: ms,
            finished_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn sample() -> Report {
        Report {
            entries: vec![
                entry("a", Status::Ok, None, 100),
                entry(
                    "b",
                    Status::Failed,
                    Some(("azure.throttled", "too many requests")),
                    900,
                ),
                entry(
                    "c",
                    Status::Failed,
                    Some(("azure.throttled", "too many requests")),
                    50,
                ),
                entry("d", Status::Failed, Some(("script.runtime", "x < y")), 70),
            ],
            ..Report::default()
        }
    }

    #[test]
    fn failures_are_grouped_by_identical_error_largest_first() {
        let groups = sample().failure_groups();
        assert_eq!(groups[0].1, vec!["b", "c"]);
        assert_eq!(groups[1].0, "script.runtime: x < y");
        let summary = sample().summary();
        assert!(
            summary.contains("4 VMs: 1 ok, 3 failed, 0 not started"),
            "{summary}"
        );
        assert!(summary.contains("slowest: b 0.9s, a 0.1s"), "{summary}");
        assert!(summary.contains("b, c (2)"), "{summary}");
    }

    #[test]
    fn junit_has_a_case_per_vm_and_escapes() {
        let x = sample().junit();
        assert!(x.contains("tests=\"4\" failures=\"3\""), "{x}");
        assert!(
            x.contains("<testcase classname=\"rg-x\" name=\"a\" time=\"0.100\"/>"),
            "{x}"
        );
        assert!(x.contains("message=\"x &lt; y\""), "{x}");
    }

    #[test]
    fn not_started_vms_appear_in_rows() {
        let mut r = sample();
        r.not_started.push(Target {
            id: "/x".into(),
            name: "e".into(),
            resource_group: "rg".into(),
        });
        assert!(!r.all_ok());
        assert_eq!(r.rows().last().unwrap()["status"], "not_started");
        assert!(r.junit().contains("<skipped"));
    }
}
