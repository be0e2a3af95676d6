//! The HTTP front end: what every ARM request goes through before `routes.rs` dispatches it —
//! seeded faults, bearer token, api-version, the subscription's token buckets — and the headers
//! every answer carries (request ids, remaining-requests counts, `x-ms-emulator: azssh`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use hyper::body::Incoming;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::faults::{Fault, FaultInjector};
use super::lro::Operations;
use super::reply::{ArmError, Reply};
use super::routes::route;
use super::throttle::{OperationType, Throttle};
use super::world::{GuestFactory, GuestRuntime, World};
use crate::secret::Secret;

/// Counters for tests and benchmarks.
#[derive(Default)]
pub struct Stats {
    requests: Mutex<BTreeMap<&'static str, u64>>,
    throttled: AtomicU64,
    run_commands: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests by kind (`vm.get`, `vm.runCommand`, `nsg.rule.put`, ...), all answers included.
    pub requests: BTreeMap<String, u64>,
    /// 429 answers sent (empty bucket or injected).
    pub throttled: u64,
    /// RunCommands started, by VM name.
    pub run_commands: BTreeMap<String, u64>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
}

impl Stats {
    fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
        *lock(map).entry(key).or_default() += 1;
    }
    /// Counts a request of another front end (the bastion data plane) under `kind`.
    pub(crate) fn count_request(&self, kind: &'static str) {
        Self::bump(&self.requests, kind);
    }
    /// Counts an injected fault of another front end.
    pub(crate) fn count_fault(&self, kind: &'static str) {
        Self::bump(&self.faults, kind);
    }
    pub fn run_command_started(&self, vm: &str) {
        Self::bump(&self.run_commands, vm.to_string());
    }
    pub fn snapshot(&self) -> StatsSnapshot {
        let copy =
            |m: &BTreeMap<&'static str, u64>| m.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        StatsSnapshot {
            requests: copy(&lock(&self.requests)),
            throttled: self.throttled.load(Ordering::Relaxed),
            run_commands: lock(&self.run_commands).clone(),
            faults: copy(&lock(&self.faults)),
        }
    }
}

/// Locks a mutex, recovering the data if a holder panicked: the world stays usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared state of one running emulator.
pub struct App {
    pub world: Mutex<World>,
    pub ops: Mutex<Operations>,
    pub throttle: Mutex<Throttle>,
    pub faults: Mutex<FaultInjector>,
    pub stats: Stats,
    pub endpoint: String,
    pub token: Secret<String>,
    pub speed: f64,
    pub throttling: bool,
    pub page_size: usize,
    pub guests: Option<Arc<dyn GuestFactory>>,
}

impl App {
    /// A duration of Azure's scaled by `--speed` (Azure's RunCommand takes about 20 s).
    pub fn scaled(&self, azure: Duration) -> Duration {
        azure.div_f64(self.speed)
    }

    /// The VM's guest, created on first use.
    pub fn guest(&self, world: &mut World, vm: usize) -> Option<Arc<dyn GuestRuntime>> {
        if let Some(g) = &world.vms[vm].guest {
            return Some(g.clone());
        }
        let factory = self.guests.as_ref()?;
        let guest = factory.create(&world.guest_spec(vm));
        world.vms[vm].guest = Some(guest.clone());
        Some(guest)
    }

    /// Whether a LRO that just finished should fail (seeded `lro_fail`).
    pub fn lro_fails(&self) -> bool {
        let fails = lock(&self.faults).lro_fails();
        if fails {
            Stats::bump(&self.stats.faults, "lro_fail");
        }
        fails
    }
}

/// One parsed request, as the handlers see it.
pub struct Req {
    pub method: Method,
    pub path: String,
    /// Path segments as sent (names keep their case) and lower-cased (for matching).
    pub segs: Vec<String>,
    /// Query parameters, keys lower-cased and percent-decoded (`%24expand` is `$expand`).
    pub query: HashMap<String, String>,
    pub api_version: String,
    pub body: Bytes,
    pub peer: SocketAddr,
    /// The `If-Match` header, for the resources that honour it (`etag.rs`).
    pub if_match: Option<String>,
}

impl Req {
    pub fn json(&self) -> Result<serde_json::Value, ArmError> {
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{e}'."),
            )
        })
    }
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

/// The error hyper sees when a `reset` fault drops the connection.
#[derive(Debug)]
struct InjectedReset;
impl std::fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}
impl std::error::Error for InjectedReset {}

/// Accepts connections until `cancel` fires.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener, cancel: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!("emulator accept failed: {e}");
                    continue;
                }
            },
        };
        let app = app.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { handle(app, peer, req).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = conn => if let Err(e) = r { tracing::trace!("emulator connection ended: {e}") },
            }
        });
    }
}

async fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, InjectedReset> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let op_type = OperationType::from_method(parts.method.as_str());

    let fault = lock(&app.faults).next_request();
    let fault_name = match fault {
        Fault::None => None,
        Fault::ServerError(_) => Some("5xx"),
        Fault::Reset => Some("reset"),
        Fault::Throttle => Some("429"),
        Fault::Slow => Some("slow"),
    };
    if let Some(name) = fault_name {
        Stats::bump(&app.stats.faults, name);
    }
    let mut remaining = None;
    let (kind, result) = match fault {
        Fault::Reset => {
            Stats::bump(&app.stats.requests, "fault.reset");
            return Err(InjectedReset);
        }
        Fault::ServerError(code) => ("fault.5xx", Err(server_error(code))),
        Fault::Throttle => ("fault.429", Err(throttled(op_type, 1))),
        Fault::Slow | Fault::None => {
            if fault == Fault::Slow {
                tokio::time::sleep(app.scaled(Duration::from_secs(5))).await;
            }
            match admit(&app, &parts.headers, &parts.uri, op_type) {
                Err(e) => ("rejected", Err(e)),
                Ok((api_version, left)) => {
                    remaining = left;
                    let mut req = parse(&parts.method, &parts.uri, api_version, body, peer);
                    req.if_match = parts
                        .headers
                        .get(axum::http::header::IF_MATCH)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match compute_admit(&app, &req) {
                        Err(e) => ("throttled.compute", Err(e)),
                        Ok(extra) => {
                            let (kind, result) = route(&app, &req);
                            let add = |h: &mut Vec<(axum::http::HeaderName, String)>| {
                                for v in &extra {
                                    h.push((
                                        axum::http::HeaderName::from_static(REMAINING_RESOURCE),
                                        v.clone(),
                                    ));
                                }
                            };
                            let result = result
                                .map(|mut r| {
                                    add(&mut r.headers);
                                    lro_retry_after(&app, kind, &mut r);
                                    r
                                })
                                .map_err(|mut e| {
                                    add(&mut e.headers);
                                    e
                                });
                            (kind, result)
                        }
                    }
                }
            }
        }
    };
    Stats::bump(&app.stats.requests, kind);
    if matches!(&result, Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS) {
        app.stats.throttled.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(method = %parts.method, path = parts.uri.path(), kind, "emulator request");
    Ok(render(result, op_type, remaining, &parts.headers))
}

fn server_error(code: u16) -> ArmError {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = match code {
        503 => (
            "ServiceUnavailable",
            "The service is temporarily unavailable. Please try again later.",
        ),
        502 => (
            "BadGateway",
            "The gateway did not receive a response from 'Microsoft.Compute' within the specified time period.",
        ),
        _ => (
            "InternalServerError",
            "Encountered internal server error. Diagnostic information: timestamp '', subscription id '', tracking id '', request correlation id ''.",
        ),
    };
    ArmError::new(status, code, message)
}

fn throttled(op: OperationType, retry_after: u64) -> ArmError {
    ArmError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        format!(
            "The request is being throttled as the limit has been reached for operation type - {}. For more information, see - https://aka.ms/armthrottling",
            op.label()
        ),
    )
    .header("retry-after", retry_after.to_string())
}

const REMAINING_RESOURCE: &str = "x-ms-ratelimit-remaining-resource";

/// Azure's poll hint on a running operation, in seconds: the Compute 2025-11-01 spec declares
/// `Retry-After` on every 201/202 of its LROs (ARM.md §1.3), and the Network RP sends 10.
const LRO_RETRY_AFTER_SECS: f64 = 10.0;

/// `Retry-After` on an LRO's first answer (it names a poll URL) and on polls of an operation
/// still running, scaled by `--speed` and rounded down.
fn lro_retry_after(app: &App, kind: &str, r: &mut Reply) {
    let has = |name: &str| r.headers.iter().any(|(n, _)| n.as_str() == name);
    let first = matches!(
        r.status,
        StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED
    ) && (has("azure-asyncoperation") || has("location"));
    let running = match kind {
        "operation.status" => r
            .body
            .as_ref()
            .and_then(|b| b.get("status"))
            .is_some_and(|s| s == "InProgress"),
        "operation.location" => r.status == StatusCode::ACCEPTED,
        _ => false,
    };
    let secs = (LRO_RETRY_AFTER_SECS / app.speed).floor().max(0.0) as u64;
    // Below a second (test speeds) the hint is left out, as in the recordings, rather than
    // sent as `0`.
    if (first || running) && secs > 0 && !has("retry-after") {
        r.headers.push((header::RETRY_AFTER, secs.to_string()));
    }
}

/// The Compute RP's per-VM and per-subscription buckets (ARM.md §9): each answer carries
/// `x-ms-ratelimit-remaining-resource: Microsoft.Compute/<policy>;<count>`, an empty bucket
/// answers 429 `OperationNotAllowed` whose `details[].target` names the policy, with
/// `Retry-After` ("every throttling error includes the Retry-After header").
fn compute_admit(app: &App, req: &Req) -> Result<Vec<String>, ArmError> {
    if !app.throttling {
        return Ok(Vec::new());
    }
    let lower: Vec<String> = req.segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let Some((policy, vm)) = super::throttle::ComputePolicy::classify(req.method.as_str(), &l)
    else {
        return Ok(Vec::new());
    };
    let taken = lock(&app.throttle)
        .compute
        .take(policy, vm.as_deref(), app.speed, Instant::now());
    taken.map_err(|t| {
        let detail = serde_json::json!({
            "operationGroup": t.target,
            "startTime": super::reply::now(),
            "endTime": super::reply::now(),
            "allowedRequestCount": t.allowed,
            "measuredRequestCount": t.allowed + 1,
        });
        let mut e = ArmError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "OperationNotAllowed",
            "The server rejected the request because too many requests have been received for this subscription.",
        );
        e.details = Some(Box::new(serde_json::json!([{
            "code": "TooManyRequests",
            "target": t.target,
            "message": detail.to_string(),
        }])));
        let mut e = e.header("retry-after", t.retry_after.to_string());
        for v in t.remaining {
            e = e.header(REMAINING_RESOURCE, v);
        }
        e
    })
}

/// Bearer token, api-version, then the subscription's token bucket.
fn admit(
    app: &App,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    op: OperationType,
) -> Result<(String, Option<u32>), ArmError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("bearer "))
    }) {
        None => {
            return Err(unauthenticated(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                "The authentication failed because of missing 'Authorization' header.",
            ));
        }
        Some(t) if t.trim() != app.token.expose() => {
            return Err(unauthenticated(
                "InvalidAuthenticationToken",
                "The access token is invalid.",
                "The access token is invalid.",
            ));
        }
        Some(_) => {}
    }
    let query = parse_query(uri.query().unwrap_or(""));
    let api_version = match query.get("api-version") {
        None => {
            return Err(ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        Some(v) if !well_formed_api_version(v) => {
            return Err(ArmError::bad_request(
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{v}' is invalid. The supported versions are '2025-04-01,2025-07-01,2024-04-01,2020-01-01'."
                ),
            ));
        }
        Some(v) => v.clone(),
    };
    check_api_version(app, uri.path(), &api_version)?;
    // Resource Graph's path names no subscription and it throttles per user with its own
    // quota (graph.rs), so the subscription buckets do not count it.
    let graph = uri
        .path()
        .to_ascii_lowercase()
        .starts_with("/providers/microsoft.resourcegraph/");
    if !app.throttling || graph {
        return Ok((api_version, None));
    }
    match lock(&app.throttle).take(op, Instant::now()) {
        Ok(left) => Ok((api_version, Some(left))),
        Err(retry) => Err(throttled(op, retry)),
    }
}

/// The api-version against the addressed type's registered versions (`api_versions.rs`); the
/// refusal names the resource's location as ARM's does.
fn check_api_version(app: &App, path: &str, version: &str) -> Result<(), ArmError> {
    let lower: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s).to_ascii_lowercase())
        .collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let location = match l.iter().position(|s| *s == "locations") {
        Some(i) if i + 1 < l.len() => l[i + 1].to_string(),
        _ => {
            let world = lock(&app.world);
            l.iter()
                .position(|s| *s == "resourcegroups")
                .and_then(|i| l.get(i + 1))
                .and_then(|g| world.group(g))
                .or(if world.groups.is_empty() {
                    None
                } else {
                    Some(0)
                })
                .map(|g| world.groups[g as usize].location.to_string())
                .unwrap_or_else(|| "westus".into())
        }
    };
    super::api_versions::check(&l, version, &location)
}

fn unauthenticated(code: &str, message: &str, description: &str) -> ArmError {
    ArmError::new(StatusCode::UNAUTHORIZED, code, message).header(
        "www-authenticate",
        format!("Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"{description}\""),
    )
}

/// `YYYY-MM-DD` with an optional `-preview`-style suffix: any such version is accepted, since
/// Microsoft's SDKs already send versions newer than the ones in `reference/`.
pub fn well_formed_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (b.len() == 10
            || (b.len() > 11 && b[10] == b'-' && b[11..].iter().all(|c| c.is_ascii_alphanumeric())))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k).to_ascii_lowercase(), percent_decode(v))
        })
        .collect()
}

fn parse(
    method: &Method,
    uri: &axum::http::Uri,
    api_version: String,
    body: Bytes,
    peer: SocketAddr,
) -> Req {
    Req {
        method: method.clone(),
        path: uri.path().to_string(),
        segs: uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        query: parse_query(uri.query().unwrap_or("")),
        api_version,
        body,
        peer,
        if_match: None,
    }
}

fn render(
    result: Result<Reply, ArmError>,
    op: OperationType,
    remaining: Option<u32>,
    request: &HeaderMap,
) -> Response<Body> {
    let (status, headers, body) = match result {
        Ok(r) => (r.status, r.headers, r.body),
        Err(e) => {
            let body = e.body();
            (e.status, e.headers, Some(body))
        }
    };
    let has_body = body.is_some();
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    // The recorded 202s carry no body and no content type.
    if has_body {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation = request
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-ms-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        h.insert("x-ms-correlation-request-id", v);
    }
    if let Some(client) = request.get("x-ms-client-request-id") {
        h.insert("x-ms-client-request-id", client.clone());
    }
    if let Some(left) = remaining {
        h.insert(op.remaining_header(), HeaderValue::from(left));
    }
    // The emulator says what it is on every answer.
    h.insert("x-ms-emulator", HeaderValue::from_static("azssh"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_checked_for_shape_only() {
        for ok in ["2025-04-01", "2026-04-01", "2024-05-01-preview"] {
            assert!(well_formed_api_version(ok), "{ok}");
        }
        for bad in ["", "2025", "latest", "2025-4-1", "2025-04-01-"] {
            assert!(!well_formed_api_version(bad), "{bad}");
        }
    }

    #[test]
    fn query_keys_are_decoded_and_lower_cased() {
        let q = parse_query("api-version=2025-04-01&%24expand=instanceView&$skipToken=a%2Bb");
        assert_eq!(q["$expand"], "instanceView");
        assert_eq!(q["$skiptoken"], "a+b");
    }
}
