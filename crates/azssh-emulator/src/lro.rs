//! Long-running operations: the status resources behind `Azure-AsyncOperation` and `Location`.
//!
//! Compute and Network word their status bodies differently (recorded): Compute answers
//! `{"startTime","status","name"}` (+ `endTime`, `properties.output`, `error`); Network answers a
//! bare `{"status": "..."}`. A `Location` URL answers 202 while the operation runs and then 200
//! with the final result (or 204 when there is none).

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::reply::{ArmError, Reply, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Compute,
    Network,
}

#[derive(Debug, Clone)]
pub enum OpState {
    Running,
    Succeeded(Option<Value>),
    Failed { code: String, message: String },
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub provider: Provider,
    pub start_time: String,
    pub end_time: Option<String>,
    pub state: OpState,
}

#[derive(Default)]
pub struct Operations {
    ops: HashMap<String, Operation>,
}

/// The two poll URLs of a new operation.
pub struct OpUrls {
    pub id: String,
    pub async_operation: String,
    pub location: String,
}

impl Operations {
    pub fn begin(
        &mut self,
        provider: Provider,
        endpoint: &str,
        subscription: &str,
        region: &str,
        api_version: &str,
    ) -> OpUrls {
        let id = uuid::Uuid::new_v4().to_string();
        self.ops.insert(
            id.clone(),
            Operation {
                provider,
                start_time: now(),
                end_time: None,
                state: OpState::Running,
            },
        );
        let base = format!("{endpoint}/subscriptions/{subscription}/providers");
        match provider {
            Provider::Compute => OpUrls {
                async_operation: format!(
                    "{base}/Microsoft.Compute/locations/{region}/operations/{id}?api-version={api_version}"
                ),
                location: format!(
                    "{base}/Microsoft.Compute/locations/{region}/operations/{id}?monitor=true&api-version={api_version}"
                ),
                id,
            },
            Provider::Network => OpUrls {
                async_operation: format!(
                    "{base}/Microsoft.Network/locations/{region}/operations/{id}?api-version={api_version}"
                ),
                location: format!(
                    "{base}/Microsoft.Network/locations/{region}/operationResults/{id}?api-version={api_version}"
                ),
                id,
            },
        }
    }

    pub fn finish(&mut self, id: &str, state: OpState) {
        if let Some(op) = self.ops.get_mut(id) {
            op.end_time = Some(now());
            op.state = state;
        }
    }

    pub fn get(&self, id: &str) -> Option<&Operation> {
        self.ops.get(id)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn missing(id: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("The operation '{id}' was not found."),
    )
}

/// The `Azure-AsyncOperation` status body.
pub fn status_reply(ops: &Operations, id: &str) -> Result<Reply, ArmError> {
    let op = ops.get(id).ok_or_else(|| missing(id))?;
    let (status, properties, error) = match &op.state {
        OpState::Running => ("InProgress", None, None),
        OpState::Succeeded(result) => ("Succeeded", result.clone(), None),
        OpState::Failed { code, message } => (
            "Failed",
            None,
            Some(json!({"code": code, "message": message})),
        ),
    };
    let body = match op.provider {
        Provider::Network => {
            let mut b = json!({"status": status});
            if let Some(e) = error {
                b["error"] = e;
            }
            b
        }
        Provider::Compute => {
            let mut b = json!({"startTime": op.start_time, "status": status});
            if let Some(end) = &op.end_time {
                b["endTime"] = json!(end);
            }
            if let Some(result) = properties {
                b["properties"] = json!({ "output": result });
            }
            if let Some(e) = error {
                b["error"] = e;
            }
            b["name"] = json!(id);
            b
        }
    };
    Ok(Reply::ok(body))
}

/// The `Location` poll: 202 while running, then the final result.
pub fn location_reply(ops: &Operations, id: &str) -> Result<Reply, ArmError> {
    let op = ops.get(id).ok_or_else(|| missing(id))?;
    match &op.state {
        OpState::Running => Ok(Reply::status(StatusCode::ACCEPTED, None)),
        OpState::Succeeded(Some(result)) => Ok(Reply::ok(result.clone())),
        OpState::Succeeded(None) => Ok(Reply::status(StatusCode::NO_CONTENT, None)),
        OpState::Failed { code, message } => Err(ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            message.clone(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn compute_status_bodies_follow_the_recording() {
        let mut ops = Operations::default();
        let urls = ops.begin(Provider::Compute, "http://h", "s", "westus", "2025-04-01");
        assert!(urls.location.contains("monitor=true"));
        let running = status_reply(&ops, &urls.id).unwrap().body.unwrap();
        assert_eq!(running["status"], "InProgress");
        assert!(running.get("endTime").is_none());
        assert_eq!(
            location_reply(&ops, &urls.id).unwrap().status,
            StatusCode::ACCEPTED
        );
        ops.finish(&urls.id, OpState::Succeeded(Some(json!({"value": []}))));
        let done = status_reply(&ops, &urls.id).unwrap().body.unwrap();
        assert_eq!(done["status"], "Succeeded");
        assert_eq!(done["properties"]["output"], json!({"value": []}));
        assert_eq!(
            location_reply(&ops, &urls.id).unwrap().body,
            Some(json!({"value": []}))
        );
    }

    #[test]
    fn network_status_is_bare() {
        let mut ops = Operations::default();
        let urls = ops.begin(Provider::Network, "http://h", "s", "westus", "2024-07-01");
        ops.finish(&urls.id, OpState::Succeeded(None));
        assert_eq!(
            status_reply(&ops, &urls.id).unwrap().body,
            Some(json!({"status": "Succeeded"}))
        );
    }
}
