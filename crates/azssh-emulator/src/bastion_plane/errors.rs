//! The data plane's refusals: a status and Bastion's JSON body `{"message": "..."}`, which
//! Microsoft's clients read (`tunnel.py` raises `CloudError(response_json["message"])`,
//! `custom.py`'s `handle_error_response` reads `message`).
//!
//! Only "Tunneling is disabled" is a text seen from the real service (Azure/azure-cli#20735,
//! #19482: a bastion without native-client support answers it to `/api/tokens`); the others are
//! the emulator's wording, kept short and stable because tests assert on them.

use axum::http::StatusCode;

/// One refusal of the data plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlaneError {
    pub status: StatusCode,
    pub message: String,
}

impl PlaneError {
    fn new(status: StatusCode, message: impl Into<String>) -> PlaneError {
        PlaneError {
            status,
            message: message.into(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "message": self.message })
    }
}

/// A bastion without native-client support (Basic, or Standard/Premium with
/// `enableTunneling: false`), as Azure words it.
pub const TUNNELING_DISABLED: &str = "Tunneling is disabled";

pub fn tunneling_disabled() -> PlaneError {
    PlaneError::new(StatusCode::BAD_REQUEST, TUNNELING_DISABLED)
}

/// No `aztoken`, or not a token ARM accepts.
pub fn unauthorized() -> PlaneError {
    PlaneError::new(
        StatusCode::UNAUTHORIZED,
        "Unauthorized: the aztoken is missing or is not a valid Azure Resource Manager access token",
    )
}

pub fn bad_field(field: &str, why: &str) -> PlaneError {
    PlaneError::new(
        StatusCode::BAD_REQUEST,
        format!("Invalid request: `{field}` {why}"),
    )
}

pub fn target_not_found(resource_id: &str) -> PlaneError {
    PlaneError::new(
        StatusCode::NOT_FOUND,
        format!("The target resource '{resource_id}' was not found"),
    )
}

pub fn target_unreachable(resource_id: &str) -> PlaneError {
    PlaneError::new(
        StatusCode::FORBIDDEN,
        format!(
            "The target resource '{resource_id}' is not in the virtual network of this Bastion host or a virtual network peered with it"
        ),
    )
}

pub fn ip_connect_disabled() -> PlaneError {
    PlaneError::new(
        StatusCode::BAD_REQUEST,
        "IP based connection is not enabled on this Bastion host",
    )
}

pub fn unknown_node(node: &str) -> PlaneError {
    PlaneError::new(
        StatusCode::BAD_REQUEST,
        format!("Invalid request: X-Node-Id '{node}' is not a node of this Bastion host"),
    )
}

/// A websocket token that was never issued, was already used (tokens are single-use), was
/// issued on another node, or whose session was deleted.
pub fn websocket_token_invalid() -> PlaneError {
    PlaneError::new(
        StatusCode::UNAUTHORIZED,
        "The websocket token is invalid, expired or already used",
    )
}

pub fn session_not_found() -> PlaneError {
    PlaneError::new(StatusCode::NOT_FOUND, "Session not found")
}

pub fn not_a_websocket_upgrade() -> PlaneError {
    PlaneError::new(
        StatusCode::BAD_REQUEST,
        "Invalid request: expected a WebSocket upgrade (RFC 6455, version 13)",
    )
}

pub fn not_found() -> PlaneError {
    PlaneError::new(StatusCode::NOT_FOUND, "Not found")
}

/// A Developer bastion asked for a Windows VM: Developer connects to Linux VMs over SSH only
/// (MicrosoftDocs/azure-docs `includes/bastion-sku.md`).
pub fn developer_windows() -> PlaneError {
    PlaneError::new(
        StatusCode::BAD_REQUEST,
        "Bastion Developer SKU supports SSH connections to Linux virtual machines only",
    )
}

pub fn developer_port(port: &str) -> PlaneError {
    PlaneError::new(
        StatusCode::BAD_REQUEST,
        format!("Bastion Developer SKU supports port 22 only, not {port}"),
    )
}
