//! Resource groups and VM names seen during the session, for completing `vm("rg", "name")`.
//! Filled by observing evaluation results (anything whose map form carries `resource_group` and
//! `name`), so Tab never waits on the network.

use std::collections::{BTreeMap, BTreeSet};

use rhai::{Array, Dynamic, Map};

/// How far and how much one observation walks: a 50 000-VM array must not stall the prompt.
const MAX_DEPTH: usize = 4;
const MAX_VISITS: usize = 50_000;

#[derive(Debug, Clone, Default)]
pub struct NameCache {
    /// Lower-cased group name (Azure compares them case-insensitively) → (as seen, VM names).
    groups: BTreeMap<String, (String, BTreeSet<String>)>,
}

impl NameCache {
    pub fn insert(&mut self, resource_group: &str, name: &str) {
        let entry = self
            .groups
            .entry(resource_group.to_lowercase())
            .or_insert_with(|| (resource_group.to_string(), BTreeSet::new()));
        entry.1.insert(name.to_string());
    }

    pub fn len(&self) -> usize {
        self.groups.values().map(|(_, vms)| vms.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Records every `{resource_group, name}` found in `value` (maps, arrays, custom types).
    pub fn observe(&mut self, value: &Dynamic) {
        let mut budget = MAX_VISITS;
        self.walk(value, 0, &mut budget);
    }

    fn walk(&mut self, value: &Dynamic, depth: usize, budget: &mut usize) {
        if depth > MAX_DEPTH || *budget == 0 {
            return;
        }
        *budget -= 1;
        if let Some(items) = value.read_lock::<Array>() {
            for item in items.iter() {
                self.walk(item, depth + 1, budget);
            }
        } else if let Some(map) = value.read_lock::<Map>() {
            self.observe_map(&map, depth, budget);
        } else if !value.is_string()
            && !value.is_int()
            && let Some(map) = crate::script::api::as_map(value)
        {
            self.observe_map(&map, depth, budget);
        }
    }

    fn observe_map(&mut self, map: &Map, depth: usize, budget: &mut usize) {
        let text = |key: &str| {
            map.get(key)
                .filter(|v| v.is_string())
                .map(|v| v.to_string())
                .filter(|s| !s.is_empty())
        };
        if let (Some(rg), Some(name)) = (text("resource_group"), text("name")) {
            self.insert(&rg, &name);
        }
        for v in map.values() {
            if v.is_map() || v.is_array() {
                self.walk(v, depth + 1, budget);
            }
        }
    }

    /// Resource groups starting with `prefix` (case-insensitive), as first seen.
    pub fn groups(&self, prefix: &str) -> Vec<&str> {
        let prefix = prefix.to_lowercase();
        self.groups
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, (shown, _))| shown.as_str())
            .collect()
    }

    /// `(resource group, VM)` for the VMs of any group whose name starts with `prefix`
    /// (case-insensitive): for a VM name typed where its group belongs.
    pub fn vms_anywhere(&self, prefix: &str) -> Vec<(&str, &str)> {
        let prefix = prefix.to_lowercase();
        self.groups
            .values()
            .flat_map(|(group, vms)| vms.iter().map(move |n| (group.as_str(), n.as_str())))
            .filter(|(_, n)| n.to_lowercase().starts_with(&prefix))
            .collect()
    }

    /// VM names in `resource_group` starting with `prefix` (case-insensitive).
    pub fn vms(&self, resource_group: &str, prefix: &str) -> Vec<&str> {
        let prefix = prefix.to_lowercase();
        self.groups
            .get(&resource_group.to_lowercase())
            .map(|(_, vms)| {
                vms.iter()
                    .filter(|n| n.to_lowercase().starts_with(&prefix))
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(rg: &str, name: &str) -> Dynamic {
        let mut m = Map::new();
        m.insert("resource_group".into(), rg.into());
        m.insert("name".into(), name.into());
        m.insert("power_state".into(), "running".into());
        m.into()
    }

    #[test]
    fn observes_vm_shaped_maps_in_arrays_and_nested_maps() {
        let mut cache = NameCache::default();
        let list: Array = vec![
            vm("rg-web", "web01"),
            vm("RG-WEB", "web02"),
            vm("rg-db", "db01"),
        ];
        let mut outer = Map::new();
        outer.insert("vms".into(), list.into());
        cache.observe(&outer.into());
        assert_eq!(cache.groups("rg-"), vec!["rg-db", "rg-web"]);
        assert_eq!(cache.vms("rg-web", "WEB"), vec!["web01", "web02"]);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn ignores_maps_without_both_keys() {
        let mut cache = NameCache::default();
        let mut m = Map::new();
        m.insert("name".into(), "x".into());
        cache.observe(&m.into());
        assert!(cache.is_empty());
    }
}
