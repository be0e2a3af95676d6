//! Optimistic concurrency on Microsoft.Network resources, as the Network RP (NRP) answers it:
//! the etag format, the `If-Match` check and its 412 refusal.
//!
//! What the recordings show:
//! - An NSG has ONE etag, a weak GUID `W/"…"`, and every rule of it (custom and default) carries
//!   that same etag: azure-cli `test_network_nsg.yaml` (`nsg create` 201 body, `nsg list`: every
//!   `securityRules[].etag` equals the NSG's).
//! - Every write gives a new etag, and again when its operation completes: the rule PUT's 201
//!   body (`Updating`) has `W/"c27c0c0b-…"`, the GET after the operation `W/"8f6a3390-…"`
//!   (`recordings/excerpts/test_network_nsg.yaml`).
//! - A PUT whose `If-Match` does not match answers 412 with this body (kubernetes-sigs/
//!   cloud-provider-azure `pkg/azclient/securitygroupclient/testdata/AZURECLOUD.yaml`, a PUT of
//!   `networkSecurityGroups/testResource` with `If-Match: invalid`):
//!   `{"error":{"code":"PreconditionFailed","message":"Precondition failed.","details":[{"code":
//!   "PreconditionFailedEtagMismatch","message":"Etag provided in if-match header W/\"invalid\"
//!   does not match etag W/\"…\" of resource /subscriptions/…/networkSecurityGroups/testResource
//!   in NRP data store."}]}}` — the value sent is echoed in weak form whatever form it was sent in.
//!
//! Not recorded, so decided by RFC 9110 §13.1.1 (the stricter reading): `If-Match` on a target
//! that does not exist fails (412, same body with the current etag left empty), and `*`
//! matches any existing target. `If-None-Match` on NRP writes has no recording or documentation
//! we could find, so it is not evaluated here.

use axum::http::StatusCode;
use serde_json::json;

use super::reply::ArmError;

/// An NRP etag for a resource's write generation: a weak GUID, new for every generation.
pub fn weak_etag(seed: u64, generation: u64) -> String {
    // Not random, but distinct per (resource, generation) and GUID-shaped like NRP's.
    let mixed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ generation.rotate_left(17);
    let uuid = uuid::Uuid::from_u64_pair(mixed, generation.wrapping_mul(0x2545_f491_4f6c_dd1d));
    format!("W/\"{uuid}\"")
}

/// The opaque part of an etag as a client may send it: `W/"x"`, `"x"` or `x`.
fn opaque(value: &str) -> &str {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.trim_matches('"')
}

/// Checks `If-Match` against the target's current etag (`None`: the target does not exist).
/// No header: no condition. `resource_id` is the target, named in the refusal as NRP does.
pub fn check_if_match(
    if_match: Option<&str>,
    current: Option<&str>,
    resource_id: &str,
) -> Result<(), ArmError> {
    let Some(sent) = if_match.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    // `If-Match` may list several etags (RFC 9110); any one matching is enough.
    let listed: Vec<&str> = sent.split(',').map(str::trim).collect();
    let matches = match current {
        None => false,
        Some(now) => listed.iter().any(|e| *e == "*" || opaque(e) == opaque(now)),
    };
    if matches {
        return Ok(());
    }
    Err(precondition_failed(
        sent,
        current.unwrap_or(""),
        resource_id,
    ))
}

/// The 412 NRP answers (see the module doc for the recording).
fn precondition_failed(sent: &str, current: &str, resource_id: &str) -> ArmError {
    let mut e = ArmError::new(
        StatusCode::PRECONDITION_FAILED,
        "PreconditionFailed",
        "Precondition failed.",
    );
    e.details = Some(Box::new(json!([{
        "code": "PreconditionFailedEtagMismatch",
        "message": format!(
            "Etag provided in if-match header W/\"{}\" does not match etag W/\"{}\" of resource {resource_id} in NRP data store.",
            opaque(sent),
            opaque(current)
        ),
    }])));
    e
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ID: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n/securityRules/r";

    #[test]
    fn a_stale_etag_gets_the_recorded_412_body() {
        let now = weak_etag(7, 3);
        let e = check_if_match(Some("invalid"), Some(&now), ID).unwrap_err();
        assert_eq!(e.status, StatusCode::PRECONDITION_FAILED);
        let body = e.body();
        assert_eq!(body["error"]["code"], "PreconditionFailed");
        assert_eq!(body["error"]["message"], "Precondition failed.");
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["code"], "PreconditionFailedEtagMismatch");
        assert_eq!(
            detail["message"],
            format!(
                "Etag provided in if-match header W/\"invalid\" does not match etag {now} of resource {ID} in NRP data store."
            )
        );
    }

    #[test]
    fn the_current_etag_matches_in_any_spelling() {
        let now = weak_etag(7, 3);
        let bare = now.trim_start_matches("W/").trim_matches('"').to_string();
        for sent in [now.clone(), bare.clone(), format!("\"{bare}\""), "*".into()] {
            assert!(
                check_if_match(Some(&sent), Some(&now), ID).is_ok(),
                "{sent}"
            );
        }
        assert!(check_if_match(None, Some(&now), ID).is_ok(), "no condition");
        assert!(check_if_match(Some(&format!("W/\"x\", {now}")), Some(&now), ID).is_ok());
    }

    #[test]
    fn every_generation_has_its_own_weak_guid() {
        let a = weak_etag(7, 1);
        assert!(
            a.starts_with("W/\"") && a.ends_with('"') && a.len() == 36 + 4,
            "{a}"
        );
        assert_ne!(a, weak_etag(7, 2));
        assert_ne!(a, weak_etag(8, 1));
        assert_eq!(a, weak_etag(7, 1));
        assert!(check_if_match(Some(&a), Some(&weak_etag(7, 2)), ID).is_err());
    }

    #[test]
    fn if_match_on_a_missing_target_fails() {
        assert!(check_if_match(Some("*"), None, ID).is_err());
        assert!(check_if_match(Some("W/\"x\""), None, ID).is_err());
        assert!(check_if_match(None, None, ID).is_ok());
    }
}
