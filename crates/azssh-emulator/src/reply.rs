//! What a handler returns: a status, extra headers and a JSON body, or an ARM error in the
//! `{"error": {"code", "message", ...}}` envelope every provider uses.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Option<Value>,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: Some(body),
        }
    }
    pub fn status(status: StatusCode, body: Option<Value>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers
            .push((HeaderName::from_static(name), value.into()));
        self
    }
}

/// An error answer on the wire.
#[derive(Debug, Clone)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Option<Box<Value>>,
    pub headers: Vec<(HeaderName, String)>,
    /// Resource Graph puts no `target`/`innererror` and has its own body, so it can replace it.
    pub raw_body: Option<Box<Value>>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.to_string(),
            message: message.into(),
            details: None,
            headers: Vec::new(),
            raw_body: None,
        }
    }
    pub fn bad_request(code: &str, message: impl Into<String>) -> ArmError {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> ArmError {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> ArmError {
        self.headers
            .push((HeaderName::from_static(name), value.into()));
        self
    }

    /// ARM's answer for a resource that does not exist.
    pub fn not_found(kind: &str, name: &str, group: &str) -> ArmError {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource '{kind}/{name}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }
    pub fn group_not_found(group: &str) -> ArmError {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{group}' could not be found."),
        )
    }
    pub fn no_route(path: &str) -> ArmError {
        Self::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!(
                "The resource type could not be found for the request path '{path}' (this emulator does not model it)."
            ),
        )
    }
    pub fn method_not_allowed(method: &str) -> ArmError {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The requested resource does not support http method '{method}'."),
        )
    }

    pub fn body(&self) -> Value {
        if let Some(b) = &self.raw_body {
            return (**b).clone();
        }
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.details {
            e["details"] = (**d).clone();
        }
        json!({ "error": e })
    }

    pub fn with_header_value(&self, name: &str) -> Option<HeaderValue> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| HeaderValue::from_str(v).ok())
    }
}

/// Formats a timestamp the way ARM does (RFC 3339, UTC).
pub fn timestamp(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}
