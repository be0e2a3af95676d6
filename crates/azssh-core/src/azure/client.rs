//! `ArmClient`: the one transport every ARM call goes through. It adds `api-version`, the bearer
//! token and `x-ms-client-request-id`, retries what ARM says is retryable (429 with or without
//! `Retry-After`, 5xx and resets for idempotent calls, RunCommand's 409 "in progress"), feeds the
//! `ThrottleBudget`, follows `nextLink` paging and runs long-running operations (`lro.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use super::auth::{TokenProvider, TokenSource};
use super::budget::ThrottleBudget;
use super::config::{ApiVersions, ArmConfig, Provider, RetryPolicy, StatusHook};
use super::error::{AzureError, Result, strip_bom};

/// Cheap to clone (one `Arc`), `Send + Sync`: share one per subscription.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    subscription: String,
    api_versions: ApiVersions,
    tokens: TokenProvider,
    static_token: bool,
    budget: ThrottleBudget,
    retry: RetryPolicy,
    status_hook: Option<StatusHook>,
    /// How long each kind of LRO takes, learnt across every clone (`poll_schedule`).
    poll_schedule: super::poll_schedule::PollSchedule,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("subscription", &self.inner.subscription)
            .finish_non_exhaustive()
    }
}

/// Whether a request may be sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// GET/PUT/DELETE and safe POSTs: 429, 5xx and connection failures are retried.
    Idempotent,
    /// Actions with effects (RunCommand, start): only answers that prove the request was not
    /// acted on (429, and RunCommand-busy 409 when `busy` is set) and failures to connect.
    Once { busy: bool },
}

/// One HTTP request, before retries.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub url: Url,
    pub body: Option<Bytes>,
    pub retry: Retry,
    /// `If-Match`: the etag the write is conditional on (412 `PreconditionFailed` otherwise).
    pub if_match: Option<String>,
}

/// A response with its body read.
#[derive(Debug, Clone)]
pub struct ArmResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ArmResponse {
    /// The body as JSON; an empty body is `Value::Null`.
    pub fn json_value(&self) -> std::result::Result<Value, serde_json::Error> {
        let body = strip_bom(&self.body);
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(body)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// `Retry-After` in seconds (ARM sends seconds, ARM.md §1.3/§9).
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// Resource Graph's throttling answer has no `Retry-After`: the wait is in
/// `x-ms-user-quota-resets-after` (`hh:mm:ss`, ARM.md §9; Azure/azure-cli-extensions#3325).
pub(crate) fn quota_resets_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("x-ms-user-quota-resets-after")?.to_str().ok()?;
    let mut secs = 0u64;
    for part in v.trim().split(':') {
        secs = secs * 60 + part.trim().parse::<u64>().ok()?;
    }
    Some(Duration::from_secs(secs.max(1)))
}

/// A path and query for messages and logs: never the query, which may hold `$skipToken`s or
/// signatures (`p=...`).
pub(crate) fn redact(url: &Url) -> String {
    url.path().to_string()
}

impl ArmClient {
    pub fn new(config: ArmConfig) -> Result<Self> {
        let endpoint = Url::parse(&format!("{}/", config.endpoint.trim_end_matches('/')))
            .map_err(|_| AzureError::BadEndpoint(config.endpoint.clone()))?;
        token_may_go_to(&endpoint)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("azssh/", env!("CARGO_PKG_VERSION")))
            // A redirect to another origin would carry the request (and, with a lax client, the
            // bearer token) elsewhere; ARM never redirects across origins, so refuse it.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same = attempt
                    .previous()
                    .last()
                    .is_some_and(|prev| prev.origin() == attempt.url().origin());
                if !same {
                    attempt.error("redirect to another origin refused")
                } else if attempt.previous().len() > 10 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            // The pool's idle timer would make tokio's paused clock jump in tests; idle
            // connections are cheap to keep for a CLI run.
            .pool_idle_timeout(None);
        // Extra roots (`AZSSH_CA_BUNDLE`: a TLS-inspecting proxy, a test endpoint's own CA) are
        // added to the platform's, never replacing them.
        if let Some(path) = &config.ca_bundle {
            let mut certs = Vec::new();
            let bundle = crate::tls::read_bundle(path).map_err(|e| AzureError::Transport {
                endpoint: config.endpoint.clone(),
                reason: e.to_string(),
            })?;
            for der in bundle {
                certs.push(reqwest::Certificate::from_der(der.as_ref()).map_err(|e| {
                    AzureError::Transport {
                        endpoint: config.endpoint.clone(),
                        reason: format!("CA bundle `{}`: {e}", path.display()),
                    }
                })?);
            }
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(t) = config.timeouts.connect {
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = config.timeouts.request {
            builder = builder.timeout(t);
        }
        let http = builder.build().map_err(|e| AzureError::Transport {
            endpoint: config.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let static_token = matches!(config.token, TokenSource::Static(_));
        Ok(ArmClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                subscription: config.subscription,
                api_versions: config.api_versions,
                tokens: TokenProvider::new(config.token, config.cloud.token_scope()),
                static_token,
                budget: ThrottleBudget::default(),
                retry: config.retry,
                status_hook: config.status_hook,
                poll_schedule: Default::default(),
            }),
        })
    }

    pub fn subscription(&self) -> &str {
        &self.inner.subscription
    }
    /// The base URL, with a trailing slash.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }
    pub fn api_versions(&self) -> &ApiVersions {
        &self.inner.api_versions
    }
    /// A current ARM access token, for the one other place Microsoft's clients send it: the
    /// `aztoken` field of an Azure Bastion token request (BASTION.md §2.1).
    pub async fn access_token(&self) -> Result<crate::secret::Secret<String>> {
        self.inner.tokens.token().await
    }

    /// The shared throttle budget and request counters.
    pub fn budget(&self) -> &ThrottleBudget {
        &self.inner.budget
    }
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }
    /// What this client (and its clones) learnt about LRO durations.
    pub fn poll_schedule(&self) -> &super::poll_schedule::PollSchedule {
        &self.inner.poll_schedule
    }

    /// Tells the status hook (a spinner) what we wait for, and logs it at debug.
    pub(crate) fn status(&self, text: &str) {
        tracing::debug!(status = text);
        if let Some(hook) = &self.inner.status_hook {
            hook(text);
        }
    }

    /// `/subscriptions/{this subscription}` + `rest`.
    pub fn subscription_path(&self, rest: &str) -> String {
        format!("/subscriptions/{}{rest}", self.inner.subscription)
    }

    /// The URL for an ARM path (starting with `/`), with the provider's api-version and `query`.
    pub fn url(&self, path: &str, provider: Provider, query: &[(&str, &str)]) -> Result<Url> {
        // `join` would resolve `..` and `\` and walk to another resource: refuse instead.
        super::names::check_path(path)?;
        let mut url = self
            .inner
            .endpoint
            .join(path.trim_start_matches('/'))
            .map_err(|e| AzureError::InvalidInput(format!("bad path `{path}`: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
            q.append_pair("api-version", self.inner.api_versions.get(provider));
        }
        Ok(url)
    }

    /// An absolute URL ARM gave us (`nextLink`, `Azure-AsyncOperation`, `Location`). The token
    /// only goes to the configured endpoint's origin.
    pub fn absolute_url(&self, raw: &str) -> Result<Url> {
        let url = Url::parse(raw)
            .or_else(|_| self.inner.endpoint.join(raw.trim_start_matches('/')))
            .map_err(|e| AzureError::InvalidInput(format!("bad URL from Resource Manager: {e}")))?;
        if url.origin() != self.inner.endpoint.origin() {
            return Err(AzureError::ForeignHost {
                host: url.host_str().unwrap_or("?").to_string(),
            });
        }
        Ok(url)
    }

    /// GET a resource and decode it.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        provider: Provider,
        query: &[(&str, &str)],
    ) -> Result<T> {
        let url = self.url(path, provider, query)?;
        let resp = self
            .send(Call {
                method: Method::GET,
                url: url.clone(),
                body: None,
                retry: Retry::Idempotent,
                if_match: None,
            })
            .await?;
        decode(&Method::GET, &url, &resp)
    }

    /// GET a resource, `None` on 404.
    pub async fn get_optional<T: DeserializeOwned>(
        &self,
        path: &str,
        provider: Provider,
        query: &[(&str, &str)],
    ) -> Result<Option<T>> {
        match self.get_json(path, provider, query).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A POST that is not a long-running operation (Resource Graph, JIT initiate).
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        provider: Provider,
        body: &Value,
        retry: Retry,
    ) -> Result<T> {
        let url = self.url(path, provider, &[])?;
        let body = Bytes::from(
            serde_json::to_vec(body).map_err(|e| AzureError::InvalidInput(e.to_string()))?,
        );
        let resp = self
            .send(Call {
                method: Method::POST,
                url: url.clone(),
                body: Some(body),
                retry,
                if_match: None,
            })
            .await?;
        decode(&Method::POST, &url, &resp)
    }

    /// Sends one request, retrying per `call.retry` and the client's `RetryPolicy`.
    pub async fn send(&self, call: Call) -> Result<ArmResponse> {
        let policy = &self.inner.retry;
        let start = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let path = redact(&call.url);
        let mut attempt: u32 = 0;
        let mut busy_delay = policy.busy_delay;
        let mut refreshed_token = false;
        loop {
            attempt += 1;
            let (err, why, retry_after) = match self.attempt(&call, &request_id).await {
                Ok(resp) if resp.status.is_success() => return Ok(resp),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Transport { error, connect }) => {
                    // A failed connect never reached the server, so even actions may repeat it.
                    let retryable = call.retry == Retry::Idempotent || connect;
                    (error, retryable.then_some(Why::Connection), None)
                }
                Ok(resp) => {
                    let status = resp.status.as_u16();
                    let ra = resp.retry_after().or_else(|| {
                        (status == 429)
                            .then(|| quota_resets_after(&resp.headers))
                            .flatten()
                    });
                    let err = AzureError::from_response(
                        call.method.as_str(),
                        &path,
                        status,
                        &resp.body,
                        ra.map(|d| d.as_secs()),
                    );
                    let why = match status {
                        429 => {
                            self.inner.budget.count_throttled();
                            Some(Why::Throttled)
                        }
                        500 | 502 | 503 | 504 if call.retry == Retry::Idempotent => {
                            Some(Why::ServerError)
                        }
                        409 if call.retry == (Retry::Once { busy: true })
                            && err.is_run_command_busy() =>
                        {
                            Some(Why::Busy)
                        }
                        401 if !self.inner.static_token && !refreshed_token => {
                            Some(Why::TokenRefused)
                        }
                        _ => None,
                    };
                    (err, why, ra)
                }
            };
            let Some(why) = why else { return Err(err) };
            let delay = match why {
                Why::Busy => {
                    // RunCommand runs one script at a time per VM and a script may run for
                    // minutes: wait longer than for throttling, with its own deadline.
                    if start.elapsed() + busy_delay > policy.busy_deadline {
                        return Err(err);
                    }
                    attempt -= 1;
                    let d = busy_delay;
                    busy_delay = (busy_delay * 2).min(Duration::from_secs(60));
                    self.status("waiting for the VM's running RunCommand to finish");
                    d
                }
                Why::TokenRefused => {
                    refreshed_token = true;
                    attempt -= 1;
                    self.inner.tokens.invalidate().await;
                    Duration::ZERO
                }
                Why::Throttled | Why::ServerError | Why::Connection => {
                    let d = retry_after.unwrap_or_else(|| backoff(policy, attempt));
                    if attempt >= policy.max_attempts || start.elapsed() + d > policy.deadline {
                        return Err(err);
                    }
                    d
                }
            };
            self.inner.budget.count_retry();
            tracing::debug!(method = %call.method, path = %path, reason = why.as_str(), delay_ms = delay.as_millis() as u64, attempt, "retrying ARM request");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        call: &Call,
        request_id: &str,
    ) -> std::result::Result<ArmResponse, AttemptError> {
        token_may_go_to(&call.url).map_err(AttemptError::Fatal)?;
        let token = self
            .inner
            .tokens
            .token()
            .await
            .map_err(AttemptError::Fatal)?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                AttemptError::Fatal(AzureError::InvalidInput(
                    "the access token contains invalid characters".into(),
                ))
            })?;
        // Keeps the value out of hyper's and reqwest's Debug output and trace logs.
        auth.set_sensitive(true);
        let mut req = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json")
            .header("x-ms-client-request-id", request_id);
        if let Some(etag) = &call.if_match {
            req = req.header(reqwest::header::IF_MATCH, etag.as_str());
        }
        if let Some(body) = &call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        } else if call.method == Method::POST || call.method == Method::PUT {
            // ARM wants a Content-Length on body-less POSTs (`start`), or it answers 411.
            req = req.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        // A pacer (fleet runs) holds the request until ARM's bucket has a token for it.
        self.inner.budget.before_send(&call.method, &call.url).await;
        self.inner.budget.count_request();
        let path = redact(&call.url);
        tracing::debug!(method = %call.method, path = %path, request_id, "ARM request");
        let transport = |e: reqwest::Error| {
            if e.is_redirect() {
                // Not a transport hiccup: retrying would only be redirected again.
                return AttemptError::Fatal(AzureError::ForeignHost {
                    host: e
                        .url()
                        .and_then(|u| u.host_str())
                        .unwrap_or("?")
                        .to_string(),
                });
            }
            let connect = e.is_connect();
            let error = if e.is_timeout() {
                AzureError::Timeout {
                    method: call.method.to_string(),
                    path: path.clone(),
                }
            } else {
                AzureError::Transport {
                    endpoint: origin(&call.url),
                    reason: error_chain(&e),
                }
            };
            AttemptError::Transport { error, connect }
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.inner
            .budget
            .observe_for(&call.method, &call.url, &headers);
        let body = resp.bytes().await.map_err(transport)?;
        tracing::debug!(method = %call.method, path = %path, status = status.as_u16(), bytes = body.len(), "ARM response");
        Ok(ArmResponse {
            status,
            headers,
            body,
        })
    }
}

/// Why a request is repeated.
#[derive(Debug, Clone, Copy)]
enum Why {
    Throttled,
    ServerError,
    Busy,
    TokenRefused,
    Connection,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::Throttled => "throttled (429)",
            Why::ServerError => "server error (5xx)",
            Why::Busy => "RunCommand busy (409)",
            Why::TokenRefused => "token refused (401), fetching a new one",
            Why::Connection => "connection failed",
        }
    }
}

enum AttemptError {
    Fatal(AzureError),
    Transport { error: AzureError, connect: bool },
}

/// A bearer token travels in clear over `http://`: only to this machine (the emulator, a
/// recording proxy), never across a network.
fn token_may_go_to(url: &Url) -> Result<()> {
    if url.scheme() != "http" {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if loopback {
        Ok(())
    } else {
        Err(AzureError::InsecureEndpoint {
            host: url.host_str().unwrap_or("?").to_string(),
        })
    }
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// reqwest's Display hides the cause ("error sending request"); the chain says "connection refused".
/// URLs inside are stripped of their query.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = vec![e.without_url_ref().to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(u) => text.replace(u.as_str(), &redact(u)),
            None => text,
        }
    }
}

/// Exponential back-off with jitter in [50 %, 100 %] so a fleet does not retry in lockstep.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    use rand::Rng;
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(policy.max_delay);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

pub(crate) fn decode<T: DeserializeOwned>(
    method: &Method,
    url: &Url,
    resp: &ArmResponse,
) -> Result<T> {
    let body = strip_bom(&resp.body);
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| AzureError::Decode {
        method: method.to_string(),
        path: redact(url),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Option<ArmClient> {
        ArmClient::new(
            ArmConfig::with_static_token("https://management.azure.com", "sub", "t").ok()?,
        )
        .ok()
    }

    #[test]
    fn urls_carry_the_providers_api_version() {
        let c = client();
        let url = c.and_then(|c| {
            c.url(
                "/subscriptions/sub/resourceGroups/rg",
                Provider::Network,
                &[("$expand", "instanceView")],
            )
            .ok()
        });
        assert_eq!(
            url.map(|u| u.to_string()).as_deref(),
            Some(
                "https://management.azure.com/subscriptions/sub/resourceGroups/rg?%24expand=instanceView&api-version=2024-07-01"
            )
        );
    }

    #[test]
    fn foreign_hosts_never_get_the_token() {
        let Some(c) = client() else { return };
        assert!(
            c.absolute_url("https://management.azure.com/x?api-version=1")
                .is_ok()
        );
        assert!(matches!(
            c.absolute_url("https://foo.com/operationstatus"),
            Err(AzureError::ForeignHost { .. })
        ));
    }

    #[test]
    fn token_not_sent_over_plain_http_to_non_loopback() {
        for (endpoint, ok) in [
            ("http://127.0.0.1:8080", true),
            ("http://127.3.4.5", true),
            ("http://[::1]:9", true),
            ("http://LocalHost:1", true),
            ("https://management.azure.com", true),
            ("http://management.azure.com", false),
            ("http://10.0.0.4", false),
            ("http://localhost.evil.example", false),
        ] {
            let made = ArmConfig::with_static_token(endpoint, "sub", "t")
                .map_err(|e| e.to_string())
                .and_then(|c| ArmClient::new(c).map_err(|e| e.to_string()));
            assert_eq!(made.is_ok(), ok, "{endpoint}: {made:?}");
            if !ok {
                assert!(
                    made.err().unwrap_or_default().contains("plain http"),
                    "{endpoint}"
                );
            }
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(backoff(&p, 1) <= Duration::from_secs(1));
        assert!(backoff(&p, 3) >= Duration::from_secs(2));
        assert!(backoff(&p, 30) <= p.max_delay);
    }
}
