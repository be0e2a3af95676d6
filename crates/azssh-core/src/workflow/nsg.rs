//! NSG rules and `open_port` outcomes in the shape scripts and reports see them.

use serde_json::{Value, json};

use crate::azure::network::{OpenPortOutcome, SecurityRule};

/// A rule as scripts see it.
pub fn rule_json(rule: &SecurityRule, nsg_id: &str) -> Value {
    let p = &rule.properties;
    let ports: Vec<&str> = p
        .destination_port_range
        .iter()
        .chain(p.destination_port_ranges.iter())
        .map(String::as_str)
        .collect();
    let sources: Vec<&str> = p
        .source_address_prefix
        .iter()
        .chain(p.source_address_prefixes.iter())
        .map(String::as_str)
        .collect();
    json!({
        "name": rule.name, "priority": p.priority, "direction": p.direction, "access": p.access,
        "protocol": p.protocol, "port": ports.join(","), "source": sources.join(","),
        "nsg": nsg_id.rsplit('/').next().unwrap_or_default(), "nsg_id": nsg_id,
    })
}

/// `open_port`'s answer: the rule, where it went and what changed.
pub fn outcome_json(o: &OpenPortOutcome) -> Value {
    let mut v = rule_json(&o.rule, &o.nsg_id);
    if let Value::Object(m) = &mut v {
        m.insert("scope".into(), json!(o.scope));
        m.insert("changed".into(), json!(o.changed));
        m.insert("priority_moved_from".into(), json!(o.priority_moved_from));
        m.insert("open_to_internet".into(), json!(o.open_to_internet));
        m.insert(
            "also".into(),
            Value::Array(o.also.iter().map(outcome_json).collect()),
        );
        if o.also.iter().any(|a| a.changed) {
            m.insert("changed".into(), json!(true));
        }
    }
    v
}
