//! Which VMs a fleet run covers: resource groups, tags, a Resource Graph query, a targets file
//! or the whole subscription, merged into one deduplicated list sorted by resource id (so every
//! shard of a split run sees the same order).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::error::FleetError;
use crate::azure::client::ArmClient;
use crate::azure::error::AzureError;
use crate::azure::graph::{self, GraphOptions};
use crate::azure::resource_id::ResourceId;
use crate::azure::vm::{Vm, list_vms};
use crate::azure::vm_filter::VmFilter;

/// One VM to run on. Only the id is needed; the run reads the VM itself (inside its deadline).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    pub id: String,
    pub name: String,
    pub resource_group: String,
}

impl Target {
    pub fn from_id(id: &str) -> Option<Target> {
        // `…/virtualMachines/web01/` names the same VM as `…/web01` (ARM ignores the trailing
        // slash): keep one spelling, so the key, the journal and dedupe see one VM.
        let id = id.trim().trim_end_matches('/');
        let parsed = ResourceId::parse_typed(id, "Microsoft.Compute/virtualMachines").ok()?;
        Some(Target {
            id: id.to_string(),
            name: parsed.name().to_string(),
            resource_group: parsed.resource_group().unwrap_or_default().to_string(),
        })
    }

    /// The key the journal and the shard hash use: Azure resource ids are case-insensitive.
    pub fn key(&self) -> String {
        self.id.to_ascii_lowercase()
    }
}

/// The `--resource-group`, `--tag`, `--query`, `--targets`, `--all` flags.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub resource_groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub query: Option<String>,
    /// Ids already read from `--targets FILE`.
    pub ids: Vec<String>,
    pub all: bool,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.resource_groups.is_empty()
            && self.tags.is_empty()
            && self.query.is_none()
            && self.ids.is_empty()
            && !self.all
    }

    /// Whether the VM lists of ARM must be read (groups, tags, `--all`).
    fn lists(&self) -> bool {
        !self.resource_groups.is_empty() || !self.tags.is_empty() || self.all
    }
}

/// `k=v` pairs of `--tag`.
pub fn parse_tags(pairs: &[String]) -> Result<BTreeMap<String, String>, FleetError> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| FleetError::BadTag(p.clone()))
        })
        .collect()
}

/// A targets file: resource ids one a line (`#` comments and blank lines skipped), or a JSON
/// array of ids or of objects with an `id` (what `az vm list` and `azssh fleet -o json` print).
pub fn parse_targets_file(path: &str, text: &str) -> Result<Vec<String>, FleetError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let value: Value = serde_json::from_str(trimmed).map_err(|e| FleetError::TargetsFile {
            path: path.to_string(),
            reason: format!("invalid JSON: {e}"),
        })?;
        let items = value.as_array().cloned().unwrap_or_default();
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let id = item
                    .as_str()
                    .or_else(|| item.get("id").and_then(Value::as_str))
                    .unwrap_or_default();
                checked(path, i + 1, id)
            })
            .collect();
    }
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| checked(path, n, l))
        .collect()
}

fn checked(path: &str, line: usize, id: &str) -> Result<String, FleetError> {
    Target::from_id(id)
        .map(|t| t.id)
        .ok_or_else(|| FleetError::BadTarget {
            path: path.to_string(),
            line,
            text: id.chars().take(120).collect(),
        })
}

/// What went wrong selecting: a flag problem (exit 2) or an Azure call (exit 1).
#[derive(Debug)]
pub enum SelectError {
    Usage(FleetError),
    Azure(AzureError),
}

impl From<AzureError> for SelectError {
    fn from(e: AzureError) -> Self {
        SelectError::Azure(e)
    }
}

/// Resolves a selection into targets, sorted by lower-cased id, each VM once. Groups, tags and
/// `--all` are answered from `inventory` (the run's Resource Graph read) when there is one,
/// else from ARM's paged VM lists.
pub async fn select(
    client: &ArmClient,
    sel: &Selection,
    inventory: Option<&[Vm]>,
) -> Result<Vec<Target>, SelectError> {
    if sel.is_empty() {
        return Err(SelectError::Usage(FleetError::NoSelector));
    }
    let mut ids: Vec<String> = sel.ids.clone();
    if let Some(kql) = &sel.query {
        let rows = graph::graph_query(client, kql, &GraphOptions::default()).await?;
        for row in &rows {
            let id = row.get("id").and_then(Value::as_str);
            match id.and_then(Target::from_id) {
                Some(t) => ids.push(t.id),
                None if id.is_none() => return Err(SelectError::Usage(FleetError::QueryWithoutId)),
                // Rows for other resource types (a broad query) are not VMs to run on.
                None => tracing::debug!("skipping non-VM row {id:?}"),
            }
        }
    }
    if sel.lists() {
        let filter = VmFilter {
            tags: sel.tags.clone(),
            ..VmFilter::default()
        };
        let groups: Vec<Option<&str>> = if sel.resource_groups.is_empty() {
            vec![None]
        } else {
            sel.resource_groups
                .iter()
                .map(|g| Some(g.as_str()))
                .collect()
        };
        for group in groups {
            if let Some(known) = inventory {
                ids.extend(
                    known
                        .iter()
                        .filter(|vm| {
                            group.is_none_or(|g| g.eq_ignore_ascii_case(&vm.resource_group))
                        })
                        .filter(|vm| filter.matches_listed(vm))
                        .map(|vm| vm.id.clone()),
                );
                continue;
            }
            let listed = list_vms(client, group).await?;
            ids.extend(
                listed
                    .into_iter()
                    .filter(|vm| filter.matches_listed(vm))
                    .map(|vm| vm.id),
            );
        }
    }
    Ok(dedupe(ids))
}

/// Each id once (case-insensitively), sorted.
pub fn dedupe(ids: Vec<String>) -> Vec<Target> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<Target> = ids
        .iter()
        .filter_map(|id| Target::from_id(id))
        .filter(|t| seen.insert(t.key()))
        .collect();
    out.sort_by_key(Target::key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str =
        "/subscriptions/s/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/web01";
    const B: &str =
        "/subscriptions/s/resourceGroups/rg-b/providers/Microsoft.Compute/virtualMachines/db01";

    #[test]
    fn targets_file_reads_lines_with_comments() {
        let ids = parse_targets_file("t", &format!("# fleet\n{A}\n\n  {B}  \n")).unwrap();
        assert_eq!(ids, vec![A.to_string(), B.to_string()]);
    }

    #[test]
    fn targets_file_reads_json_ids_and_objects() {
        let text = format!(r#"["{A}", {{"id": "{B}", "name": "db01"}}]"#);
        assert_eq!(parse_targets_file("t", &text).unwrap().len(), 2);
    }

    #[test]
    fn targets_file_names_the_bad_line() {
        let err = parse_targets_file("t.txt", &format!("{A}\nweb02\n")).unwrap_err();
        assert!(err.to_string().contains("line 2 of `t.txt`"), "{err}");
    }

    #[test]
    fn dedupe_ignores_id_case_and_sorts() {
        let out = dedupe(vec![
            A.into(),
            B.into(),
            A.to_uppercase().replace("SUBSCRIPTIONS", "subscriptions"),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "web01");
        assert_eq!(out[1].resource_group, "rg-b");
    }

    #[test]
    fn trailing_slash_id_is_not_a_second_target() {
        let out = dedupe(vec![
            format!("{A}/"),
            A.to_uppercase().replace("SUBSCRIPTIONS", "subscriptions") + "/",
            A.into(),
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].id, A);
        assert_eq!(
            parse_targets_file("t", &format!("{A}/\n")).unwrap(),
            vec![A.to_string()]
        );
    }

    #[test]
    fn tags_need_equals() {
        assert!(parse_tags(&["env".into()]).is_err());
        assert_eq!(parse_tags(&["env=prod".into()]).unwrap()["env"], "prod");
    }
}
