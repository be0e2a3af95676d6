//! `AzureError`: every way an ARM call can fail, with the ARM error envelope parsed into fields
//! and a hint for the codes users meet most.

use serde::Deserialize;

use crate::error::UserError;
use crate::error::kind;

/// One entry of an ARM error's `details` (also used for the top level itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// ARM answered with a status and an error envelope.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// ARM answered with a status but the body was not an error envelope.
    #[error("{method} `{path}` failed with {status}: {excerpt}")]
    UnexpectedResponse {
        status: u16,
        method: String,
        path: String,
        excerpt: String,
    },
    /// A long-running operation ended `Failed` or `Canceled`.
    #[error("{what} ended {status}: {code}: {message}")]
    OperationFailed {
        what: String,
        status: String,
        code: String,
        message: String,
        details: Vec<ErrorDetail>,
    },
    /// A long-running operation was still running when our deadline passed.
    #[error("gave up waiting for {what} after {seconds}s")]
    OperationTimeout { what: String, seconds: u64 },
    #[error("could not reach `{endpoint}`: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("{method} `{path}` timed out")]
    Timeout { method: String, path: String },
    #[error("could not decode the answer to {method} `{path}`: {reason}")]
    Decode {
        method: String,
        path: String,
        reason: String,
    },
    #[error("no credential produced an access token; tried: {}", tried.join("; "))]
    NoCredential { tried: Vec<String> },
    #[error("no subscription is configured")]
    NoSubscription,
    #[error(
        "unknown cloud `{0}`; valid names: `AzureCloud`, `AzureUSGovernment`, `AzureChinaCloud`"
    )]
    UnknownCloud(String),
    #[error("invalid Resource Manager endpoint `{0}`: it must be an absolute http(s) URL")]
    BadEndpoint(String),
    #[error("malformed resource id `{id}`: {reason}")]
    BadResourceId { id: String, reason: String },
    #[error("refusing to send credentials to `{host}`, which is not the Resource Manager endpoint")]
    ForeignHost { host: String },
    #[error("refusing to send the access token over plain http to `{host}`")]
    InsecureEndpoint { host: String },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A lookup that found nothing, where ARM itself did not answer 404 (e.g. no JIT policy).
    #[error("{0}")]
    NotFound(String),
    /// `open_port` was asked for a priority another rule of the same direction holds.
    #[error("priority {priority} is taken by rule `{holder}` in `{nsg}`")]
    PriorityTaken {
        priority: i32,
        holder: String,
        nsg: String,
    },
    /// ARM's 404 for a VM, with the names nearest to the one asked for as the hint.
    #[error("{message}")]
    VmNotFound { message: String, hint: String },
    /// No just-in-time policy in the VM's resource group lists the VM.
    #[error("no just-in-time policy covers VM `{vm}`")]
    NoJitPolicy { vm: String },
    /// Resource Graph answered `resultTruncated` with no `$skipToken`: the rows are a prefix.
    #[error(
        "the Resource Graph query returned only its first {rows} rows (`resultTruncated`) and cannot be paged"
    )]
    GraphTruncated { rows: usize },
    /// An NSG rule source that is neither an address, a CIDR nor a service tag.
    #[error("`{source_prefix}` is not a valid rule source: {reason}")]
    InvalidSource {
        source_prefix: String,
        reason: String,
    },
}

/// The fields of an ARM error answer (boxed in `AzureError::Api` to keep results small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub method: String,
    /// The request path without its query string (queries may carry `$skipToken`s and
    /// signatures, so they never reach messages).
    pub path: String,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<ErrorDetail>,
    /// Seconds from `Retry-After`, kept so a throttled caller can say when to come back.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} `{}` failed with {} {}: {}",
            self.method, self.path, self.status, self.code, self.message
        )
    }
}

pub type Result<T, E = AzureError> = std::result::Result<T, E>;

impl AzureError {
    /// The ARM error code when there is one (`ResourceNotFound`, `Conflict`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            AzureError::Api(a) => Some(&a.code),
            AzureError::OperationFailed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the error came from a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            AzureError::Api(a) => Some(a.status),
            AzureError::UnexpectedResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Builds the error for a non-success response: the envelope `{"error":{...}}`, or the
    /// unwrapped form the Compute throttling doc shows (`{"code":..,"message":..}`), or an excerpt.
    pub fn from_response(
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
        retry_after: Option<u64>,
    ) -> Self {
        match parse_envelope(body) {
            Some(detail) => AzureError::Api(Box::new(ApiError {
                status,
                method: method.to_string(),
                path: path.to_string(),
                code: detail.code,
                message: detail.message,
                target: detail.target,
                details: detail.details,
                retry_after,
            })),
            None => AzureError::UnexpectedResponse {
                status,
                method: method.to_string(),
                path: path.to_string(),
                excerpt: excerpt(body),
            },
        }
    }

    /// RunCommand is one-at-a-time per VM; ARM answers a second invoke with 409 `Conflict`
    /// "Run command extension execution is in progress" (azure-cli#32305).
    pub fn is_run_command_busy(&self) -> bool {
        matches!(self, AzureError::Api(a)
            if a.status == 409 && a.message.to_ascii_lowercase().contains("execution is in progress"))
    }

    /// 412 `PreconditionFailed`: the `If-Match` etag no longer matches, someone wrote to the
    /// resource since it was read (the Network RP's body: `code` `PreconditionFailed`, detail
    /// `PreconditionFailedEtagMismatch`).
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(412)
    }

    fn matches_code(&self, wanted: &str) -> bool {
        self.code().is_some_and(|c| c.eq_ignore_ascii_case(wanted))
    }
}

/// Parses an ARM error body in either form; `None` when it is not one.
pub fn parse_envelope(body: &[u8]) -> Option<ErrorDetail> {
    #[derive(Deserialize)]
    struct Wrapped {
        error: ErrorDetail,
    }
    let body = strip_bom(body);
    if let Ok(w) = serde_json::from_slice::<Wrapped>(body)
        && (!w.error.code.is_empty() || !w.error.message.is_empty())
    {
        return Some(w.error);
    }
    match serde_json::from_slice::<ErrorDetail>(body) {
        Ok(d) if !d.code.is_empty() => Some(d),
        _ => None,
    }
}

pub(crate) fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body)
}

/// A short, single-line excerpt of a body for messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "(empty body)".to_string();
    }
    match flat.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

impl UserError for AzureError {
    fn kind(&self) -> &'static str {
        use AzureError::*;
        match self {
            Api(a) => {
                let status = &a.status;
                if self.matches_code("ResourceNotFound")
                    || self.matches_code("NotFound")
                    || self.matches_code("ResourceGroupNotFound")
                    || *status == 404
                {
                    kind::azure::NOT_FOUND
                } else if self.matches_code("AuthorizationFailed") || *status == 403 {
                    kind::azure::FORBIDDEN
                } else if *status == 401 || self.matches_code("InvalidAuthenticationToken") {
                    kind::azure::UNAUTHORIZED
                } else if self.matches_code("SecurityRuleConflict") {
                    kind::azure::RULE_CONFLICT
                } else if self.is_run_command_busy() {
                    kind::azure::RUN_COMMAND_BUSY
                } else if *status == 429 {
                    kind::azure::THROTTLED
                } else if self.matches_code("OperationNotAllowed") {
                    kind::azure::OPERATION_NOT_ALLOWED
                } else if *status == 409 {
                    kind::azure::CONFLICT
                } else if *status >= 500 {
                    kind::azure::SERVER_ERROR
                } else {
                    kind::azure::BAD_REQUEST
                }
            }
            UnexpectedResponse { status: 401, .. } => kind::azure::UNAUTHORIZED,
            UnexpectedResponse { status: 404, .. } => kind::azure::NOT_FOUND,
            UnexpectedResponse { status: 429, .. } => kind::azure::THROTTLED,
            // A gateway's 502/503 page is no ARM envelope, but it is a server error all the same.
            UnexpectedResponse {
                status: 500..=599, ..
            } => kind::azure::SERVER_ERROR,
            UnexpectedResponse { .. } => kind::azure::UNEXPECTED_RESPONSE,
            OperationFailed { .. } => kind::azure::OPERATION_FAILED,
            OperationTimeout { .. } => kind::azure::OPERATION_TIMEOUT,
            Transport { .. } => kind::azure::TRANSPORT,
            Timeout { .. } => kind::azure::TIMEOUT,
            Decode { .. } => kind::azure::DECODE,
            NoCredential { .. } => kind::azure::NO_CREDENTIAL,
            NoSubscription => kind::azure::NO_SUBSCRIPTION,
            UnknownCloud(_) => kind::azure::UNKNOWN_CLOUD,
            BadEndpoint(_) => kind::azure::BAD_ENDPOINT,
            BadResourceId { .. } => kind::azure::BAD_RESOURCE_ID,
            ForeignHost { .. } => kind::azure::FOREIGN_HOST,
            InsecureEndpoint { .. } => kind::azure::INSECURE_ENDPOINT,
            InvalidInput(_) => kind::azure::INVALID_INPUT,
            NotFound(_) | VmNotFound { .. } => kind::azure::NOT_FOUND,
            PriorityTaken { .. } => kind::azure::PRIORITY_TAKEN,
            InvalidSource { .. } => kind::azure::INVALID_SOURCE,
            NoJitPolicy { .. } => kind::azure::NO_JIT_POLICY,
            GraphTruncated { .. } => kind::azure::GRAPH_TRUNCATED,
        }
    }

    fn hint(&self) -> Option<String> {
        use AzureError::*;
        let hint = match (self, self.kind()) {
            (VmNotFound { hint, .. }, _) => hint.clone(),
            (_, kind::azure::NOT_FOUND) => {
                "check the resource group, the name and the subscription (`--subscription` or `AZURE_SUBSCRIPTION_ID`)".to_string()
            }
            (_, kind::azure::FORBIDDEN) => {
                "your identity lacks a role on this scope: reading VMs needs `Reader`; RunCommand, extensions and NSG rules need `Virtual Machine Contributor` and `Network Contributor` (or `Contributor`)".to_string()
            }
            (_, kind::azure::UNAUTHORIZED) | (NoCredential { .. }, _) => {
                "run `az login` (or set `AZSSH_ACCESS_TOKEN`, or `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`)".to_string()
            }
            (Api(a), kind::azure::RULE_CONFLICT) => {
                format!("another rule already uses this priority and direction ({}); pick a free priority", a.message)
            }
            (_, kind::azure::RUN_COMMAND_BUSY) => {
                "RunCommand runs one script at a time per VM; wait for the running one to finish".to_string()
            }
            (_, kind::azure::OPERATION_NOT_ALLOWED) => {
                "the VM may not be running: start it with `start()` or `ensure_running()`".to_string()
            }
            (Api(a), kind::azure::THROTTLED) if a.retry_after.is_some() => {
                let s = a.retry_after.unwrap_or_default();
                format!("Resource Manager is throttling this subscription; retry in {s}s or lower the concurrency")
            }
            (_, kind::azure::THROTTLED) => {
                "Resource Manager is throttling this subscription; lower the concurrency".to_string()
            }
            (NoSubscription, _) => {
                "pass `--subscription`, set `AZURE_SUBSCRIPTION_ID`, or pick a default with `az account set -s <id>`".to_string()
            }
            (InsecureEndpoint { .. }, _) => "use an `https://` endpoint; plain `http://` is accepted only on loopback (127.0.0.0/8, ::1, localhost), for a local emulator".to_string(),
            (BadEndpoint(_), _) => "set `AZSSH_ARM_ENDPOINT` like `https://management.azure.com`".to_string(),
            (Transport { .. }, _) => "check the network and `AZSSH_ARM_ENDPOINT`".to_string(),
            (GraphTruncated { .. }, _) => {
                "project `id` (`| project id, name, ...`) and remove `take`/`limit` so the service can page the results".to_string()
            }
            (NoJitPolicy { .. }, _) => {
                "enable just-in-time VM access for it in Microsoft Defender for Cloud (Defender for Servers plan), or open the port with `open_port`".to_string()
            }
            (PriorityTaken { .. }, _) => {
                "leave `priority` out to take the next free one, or pick another (100-4096)".to_string()
            }
            (InvalidSource { .. }, _) => {
                "give your address (`203.0.113.7`), a CIDR (`203.0.113.0/24`), a service tag (`VirtualNetwork`), or `*` to open the port to the Internet".to_string()
            }
            (BadResourceId { .. }, _) => {
                "ids look like `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachines/<name>`".to_string()
            }
            _ => return None,
        };
        Some(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_envelope_is_parsed_into_fields() {
        let body = br#"{"error":{"code":"BadRequest","message":"bad query","details":[{"code":"InvalidQuery","message":"q"},{"code":"ParserFailure","line":1}]}}"#;
        let e = AzureError::from_response(
            "POST",
            "/providers/Microsoft.ResourceGraph/resources",
            400,
            body,
            None,
        );
        match &e {
            AzureError::Api(a) => {
                assert_eq!(a.code, "BadRequest");
                assert_eq!(a.message, "bad query");
                assert_eq!(a.details.len(), 2);
                assert_eq!(a.details[1].code, "ParserFailure");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(e.kind(), "azure.bad_request");
    }

    #[test]
    fn unwrapped_compute_throttling_body_is_parsed() {
        let body = br#"{"code":"OperationNotAllowed","message":"The server rejected the request because too many requests have been received for this subscription.","details":[{"code":"TooManyRequests","target":"HighCostGet30Min","message":"{}"}]}"#;
        let e = AzureError::from_response("GET", "/x", 429, body, Some(1200));
        assert_eq!(e.code(), Some("OperationNotAllowed"));
        assert_eq!(e.kind(), "azure.throttled");
        assert!(e.hint().unwrap_or_default().contains("1200s"));
    }

    #[test]
    fn non_json_body_keeps_status_and_excerpt() {
        let e =
            AzureError::from_response("GET", "/x", 502, b"<html>\n  Bad   gateway</html>", None);
        assert_eq!(e.status(), Some(502));
        assert_eq!(
            e.to_string(),
            "GET `/x` failed with 502: <html> Bad gateway</html>"
        );
    }

    #[test]
    fn hints_for_common_codes() {
        let cases = [
            (
                404,
                r#"{"error":{"code":"ResourceNotFound","message":"m"}}"#,
                "azure.not_found",
                "resource group",
            ),
            (
                403,
                r#"{"error":{"code":"AuthorizationFailed","message":"m"}}"#,
                "azure.forbidden",
                "Contributor",
            ),
            (
                401,
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"m"}}"#,
                "azure.unauthorized",
                "az login",
            ),
            (
                400,
                r#"{"error":{"code":"SecurityRuleConflict","message":"Security rule a conflicts with rule b."}}"#,
                "azure.rule_conflict",
                "conflicts with rule b",
            ),
            (
                409,
                r#"{"error":{"code":"OperationNotAllowed","message":"VM is deallocated"}}"#,
                "azure.operation_not_allowed",
                "start()",
            ),
            (
                409,
                r#"{"error":{"code":"Conflict","message":"Run command extension execution is in progress. Please wait for completion before invoking a run command."}}"#,
                "azure.run_command_busy",
                "one script at a time",
            ),
        ];
        for (status, body, kind, hint) in cases {
            let e = AzureError::from_response("GET", "/x", status, body.as_bytes(), None);
            assert_eq!(e.kind(), kind, "{body}");
            assert!(
                e.hint().unwrap_or_default().contains(hint),
                "{body}: {:?}",
                e.hint()
            );
        }
    }

    #[test]
    fn excerpt_is_bounded() {
        let long = "x".repeat(1000);
        assert!(excerpt(long.as_bytes()).chars().count() <= 201);
    }
}
