//! Where ARM bearer tokens come from: `AZSSH_ACCESS_TOKEN` as is, or a chain of azure_identity
//! credentials (there is no `DefaultAzureCredential` in azure_identity 1.x, so we compose our own),
//! behind a cache that refreshes shortly before expiry, once for all concurrent callers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock};

use super::cloud::Cloud;
use super::error::{AzureError, Result};
use crate::secret::Secret;

/// A bearer token and when it stops working.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: Secret<String>,
    pub expires_on: OffsetDateTime,
}

/// Anything that can fetch a token for a scope: one link of the chain.
pub trait FetchToken: Send + Sync {
    /// What to call it in "tried: ..." messages, e.g. "Azure CLI".
    fn name(&self) -> &str;
    /// Fetch a fresh token; the error string says why this source could not.
    fn fetch<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, std::result::Result<AccessToken, String>>;
}

/// Where the client gets its tokens.
#[derive(Clone)]
pub enum TokenSource {
    /// `AZSSH_ACCESS_TOKEN`: used as is, never refreshed.
    Static(Secret<String>),
    /// Tried in order; the first that yields a token wins (and is tried first next time).
    Chain(Vec<Arc<dyn FetchToken>>),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("TokenSource::Static(<secret>)"),
            TokenSource::Chain(links) => {
                let names: Vec<&str> = links.iter().map(|l| l.name()).collect();
                write!(f, "TokenSource::Chain({names:?})")
            }
        }
    }
}

/// A link backed by an azure_identity credential.
struct IdentityLink {
    name: &'static str,
    credential: Arc<dyn azure_core::credentials::TokenCredential>,
    /// Managed identity probes IMDS, which off Azure can hang until the TCP timeout, so each
    /// link gets a bound.
    timeout: Duration,
}

impl FetchToken for IdentityLink {
    fn name(&self) -> &str {
        self.name
    }

    fn fetch<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, std::result::Result<AccessToken, String>> {
        Box::pin(async move {
            let scopes = [scope];
            let call = self.credential.get_token(&scopes, None);
            match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok(t)) => Ok(AccessToken {
                    token: Secret::new(t.token.secret().to_string()),
                    expires_on: t.expires_on,
                }),
                Ok(Err(e)) => Err(first_line(&e.to_string())),
                Err(_) => Err(format!("no answer within {}s", self.timeout.as_secs())),
            }
        })
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("failed")
        .to_string()
}

/// A link that cannot be built (e.g. missing variables) still appears in the error message.
struct UnavailableLink {
    name: &'static str,
    reason: String,
}

impl FetchToken for UnavailableLink {
    fn name(&self) -> &str {
        self.name
    }
    fn fetch<'a>(
        &'a self,
        _scope: &'a str,
    ) -> BoxFuture<'a, std::result::Result<AccessToken, String>> {
        let reason = self.reason.clone();
        Box::pin(async move { Err(reason) })
    }
}

impl TokenSource {
    /// The credential chain DESIGN.md fixes: environment service principal, workload identity,
    /// managed identity, Azure CLI, Azure Developer CLI. `env` is the variable lookup.
    pub fn default_chain(cloud: Cloud, env: &dyn Fn(&str) -> Option<String>) -> TokenSource {
        use azure_identity::*;
        let core_cloud = Some(Arc::new(identity_cloud(cloud, env)));
        let client_options = || azure_core::http::ClientOptions {
            cloud: core_cloud.clone(),
            ..Default::default()
        };
        let mut links: Vec<Arc<dyn FetchToken>> = Vec::new();

        let tenant = env("AZURE_TENANT_ID");
        let client = env("AZURE_CLIENT_ID");
        match (&tenant, &client, env("AZURE_CLIENT_SECRET")) {
            (Some(t), Some(c), Some(s)) => {
                let options = ClientSecretCredentialOptions {
                    client_options: client_options(),
                };
                links.push(identity_or_unavailable(
                    "environment service principal",
                    ClientSecretCredential::new(t, c.clone(), s.into(), Some(options))
                        .map(|c| c as _),
                    Duration::from_secs(30),
                ));
            }
            _ => links.push(Arc::new(UnavailableLink {
                name: "environment service principal",
                reason:
                    "`AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` are not all set"
                        .into(),
            })),
        }

        match env("AZURE_FEDERATED_TOKEN_FILE") {
            Some(file) => {
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                    client_id: client.clone(),
                    tenant_id: tenant.clone(),
                    token_file_path: Some(file.into()),
                };
                links.push(identity_or_unavailable(
                    "workload identity",
                    WorkloadIdentityCredential::new(Some(options)).map(|c| c as _),
                    Duration::from_secs(30),
                ));
            }
            None => links.push(Arc::new(UnavailableLink {
                name: "workload identity",
                reason: "`AZURE_FEDERATED_TOKEN_FILE` is not set".into(),
            })),
        }

        // Off Azure, IMDS does not answer; App Service and friends announce an endpoint.
        let mi_timeout = if env("IDENTITY_ENDPOINT").is_some() || env("MSI_ENDPOINT").is_some() {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(3)
        };
        let mi_options = ManagedIdentityCredentialOptions {
            client_options: client_options(),
            ..Default::default()
        };
        links.push(identity_or_unavailable(
            "managed identity",
            ManagedIdentityCredential::new(Some(mi_options)).map(|c| c as _),
            mi_timeout,
        ));
        links.push(identity_or_unavailable(
            "Azure CLI (`az login`)",
            AzureCliCredential::new(None).map(|c| c as _),
            Duration::from_secs(60),
        ));
        links.push(identity_or_unavailable(
            "Azure Developer CLI (`azd auth login`)",
            AzureDeveloperCliCredential::new(None).map(|c| c as _),
            Duration::from_secs(60),
        ));
        TokenSource::Chain(links)
    }
}

/// Where the service principal and workload identity sign in: `AZURE_AUTHORITY_HOST` when set
/// (custom and sovereign clouds, Azure Stack, a local identity endpoint), as Azure's SDKs read
/// it, else the cloud's own authority. azure_identity 1.x reads the variable only when no cloud is
/// configured, and we always configure one (for `--cloud`), so without this a service principal
/// would always sign in at the `--cloud`'s authority, the public cloud's by default.
pub fn identity_cloud(
    cloud: Cloud,
    env: &dyn Fn(&str) -> Option<String>,
) -> azure_core::cloud::CloudConfiguration {
    match env("AZURE_AUTHORITY_HOST").filter(|h| !h.trim().is_empty()) {
        Some(host) => {
            let mut custom = azure_core::cloud::CustomConfiguration::default();
            custom.authority_host = host.trim().trim_end_matches('/').to_string();
            custom.into()
        }
        None => cloud.core_configuration(),
    }
}

fn identity_or_unavailable(
    name: &'static str,
    built: azure_core::Result<Arc<dyn azure_core::credentials::TokenCredential>>,
    timeout: Duration,
) -> Arc<dyn FetchToken> {
    match built {
        Ok(credential) => Arc::new(IdentityLink {
            name,
            credential,
            timeout,
        }),
        Err(e) => Arc::new(UnavailableLink {
            name,
            reason: first_line(&e.to_string()),
        }),
    }
}

/// Refresh this long before expiry, so a token never expires mid-request or mid-LRO poll.
const REFRESH_MARGIN: time::Duration = time::Duration::minutes(5);

/// The cache in front of a `TokenSource`. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<ProviderInner>,
}

struct ProviderInner {
    source: TokenSource,
    scope: String,
    cached: RwLock<Option<AccessToken>>,
    /// Held while fetching, so concurrent callers wait for one refresh instead of stampeding.
    refresh: Mutex<()>,
    /// Index of the chain link that last succeeded: tried first next time.
    winner: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("source", &self.inner.source)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    pub fn new(source: TokenSource, scope: impl Into<String>) -> Self {
        TokenProvider {
            inner: Arc::new(ProviderInner {
                source,
                scope: scope.into(),
                cached: RwLock::new(None),
                refresh: Mutex::new(()),
                winner: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// A token valid for at least the refresh margin.
    pub async fn token(&self) -> Result<Secret<String>> {
        if let TokenSource::Static(t) = &self.inner.source {
            return Ok(t.clone());
        }
        if let Some(t) = self.fresh_cached().await {
            return Ok(t);
        }
        let _guard = self.inner.refresh.lock().await;
        // Someone else may have refreshed while we waited for the lock.
        if let Some(t) = self.fresh_cached().await {
            return Ok(t);
        }
        let fetched = self.fetch().await?;
        let token = fetched.token.clone();
        *self.inner.cached.write().await = Some(fetched);
        Ok(token)
    }

    /// Drops the cached token, e.g. after ARM answered 401 to it.
    pub async fn invalidate(&self) {
        *self.inner.cached.write().await = None;
    }

    async fn fresh_cached(&self) -> Option<Secret<String>> {
        let cached = self.inner.cached.read().await;
        let t = cached.as_ref()?;
        (t.expires_on - OffsetDateTime::now_utc() > REFRESH_MARGIN).then(|| t.token.clone())
    }

    async fn fetch(&self) -> Result<AccessToken> {
        let TokenSource::Chain(links) = &self.inner.source else {
            return Err(AzureError::NoCredential { tried: vec![] });
        };
        use std::sync::atomic::Ordering;
        let first = self
            .inner
            .winner
            .load(Ordering::Relaxed)
            .min(links.len().saturating_sub(1));
        let order = std::iter::once(first).chain((0..links.len()).filter(|&i| i != first));
        let mut tried = Vec::new();
        for i in order {
            let Some(link) = links.get(i) else { continue };
            tracing::debug!(credential = link.name(), "fetching an ARM token");
            match link.fetch(&self.inner.scope).await {
                Ok(t) => {
                    tracing::debug!(credential = link.name(), expires_on = %t.expires_on, "got an ARM token");
                    self.inner.winner.store(i, Ordering::Relaxed);
                    return Ok(t);
                }
                Err(why) => {
                    tracing::debug!(credential = link.name(), reason = %why, "credential gave no token");
                    tried.push(format!("{}: {why}", link.name()));
                }
            }
        }
        Err(AzureError::NoCredential { tried })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        lifetime: time::Duration,
        fail: bool,
    }

    impl FetchToken for Counting {
        fn name(&self) -> &str {
            if self.fail { "broken" } else { "counting" }
        }
        fn fetch<'a>(
            &'a self,
            _scope: &'a str,
        ) -> BoxFuture<'a, std::result::Result<AccessToken, String>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                if self.fail {
                    return Err("not logged in".into());
                }
                Ok(AccessToken {
                    token: Secret::new(format!("token-{n}")),
                    expires_on: OffsetDateTime::now_utc() + self.lifetime,
                })
            })
        }
    }

    fn counting(lifetime: time::Duration, fail: bool) -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            lifetime,
            fail,
        })
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let link = counting(time::Duration::hours(1), false);
        let provider = TokenProvider::new(TokenSource::Chain(vec![link.clone()]), "scope");
        let calls = (0..20).map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await.map(|t| t.expose().clone()) })
        });
        for c in futures::future::join_all(calls).await {
            assert_eq!(c.ok().and_then(|r| r.ok()).as_deref(), Some("token-0"));
        }
        assert_eq!(link.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn token_close_to_expiry_is_refreshed() {
        let link = counting(time::Duration::minutes(2), false);
        let provider = TokenProvider::new(TokenSource::Chain(vec![link.clone()]), "scope");
        let _ = provider.token().await;
        let second = provider.token().await.map(|t| t.expose().clone()).ok();
        assert_eq!(second.as_deref(), Some("token-1"));
    }

    #[tokio::test]
    async fn failing_chain_lists_every_link_tried() {
        let provider = TokenProvider::new(
            TokenSource::Chain(vec![
                Arc::new(UnavailableLink {
                    name: "environment service principal",
                    reason: "not set".into(),
                }),
                counting(time::Duration::hours(1), true),
            ]),
            "scope",
        );
        let err = provider
            .token()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("environment service principal: not set"),
            "{err}"
        );
        assert!(err.contains("broken: not logged in"), "{err}");
    }

    #[tokio::test]
    async fn chain_falls_through_to_the_first_working_link() {
        let provider = TokenProvider::new(
            TokenSource::Chain(vec![
                counting(time::Duration::hours(1), true),
                counting(time::Duration::hours(1), false),
            ]),
            "scope",
        );
        assert_eq!(
            provider
                .token()
                .await
                .ok()
                .map(|t| t.expose().clone())
                .as_deref(),
            Some("token-0")
        );
    }

    #[test]
    fn authority_host_variable_wins_over_the_cloud() {
        use azure_core::cloud::CloudConfiguration as C;
        let none = |_: &str| None;
        assert!(matches!(
            identity_cloud(Cloud::AzureUSGovernment, &none),
            C::AzureGovernment
        ));
        let custom = |k: &str| {
            (k == "AZURE_AUTHORITY_HOST").then(|| "https://login.microsoftonline.de/".to_string())
        };
        match identity_cloud(Cloud::AzureCloud, &custom) {
            C::Custom(c) => assert_eq!(c.authority_host, "https://login.microsoftonline.de"),
            other => panic!("AZURE_AUTHORITY_HOST ignored: {other:?}"),
        }
    }

    #[test]
    fn token_source_debug_hides_the_token() {
        let s = TokenSource::Static(Secret::new("eyJ0eXAi.secret".into()));
        assert!(!format!("{s:?}").contains("eyJ0"));
    }
}
