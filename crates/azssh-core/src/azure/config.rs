//! `ArmConfig` and its resolver: flag > environment > the `az` CLI's default subscription
//! (`~/.azure/azureProfile.json`) > a clear error. The resolver takes its inputs explicitly
//! (flag values and an environment lookup) so every precedence rule is unit-tested.

use std::path::PathBuf;
use std::time::Duration;

use super::auth::TokenSource;
use super::cloud::Cloud;
use super::error::{AzureError, Result};
use crate::secret::Secret;

/// The resource providers we call, each with its own api-version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Compute,
    Network,
    ResourceGraph,
    Security,
}

/// api-version per provider (defaults from issue 3; ARM.md §0 explains the choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    pub compute: String,
    pub network: String,
    pub resource_graph: String,
    pub security: String,
}

impl Default for ApiVersions {
    fn default() -> Self {
        ApiVersions {
            compute: "2025-04-01".into(),
            network: "2024-07-01".into(),
            resource_graph: "2024-04-01".into(),
            security: "2020-01-01".into(),
        }
    }
}

impl ApiVersions {
    pub fn get(&self, provider: Provider) -> &str {
        match provider {
            Provider::Compute => &self.compute,
            Provider::Network => &self.network,
            Provider::ResourceGraph => &self.resource_graph,
            Provider::Security => &self.security,
        }
    }
}

/// Retry and deadline knobs. `Default` is what the CLI uses.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First back-off when the server gives no `Retry-After`; doubles, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Total time one request may spend retrying. A `Retry-After` that would pass it is not
    /// waited for: the 429 is returned at once with its hint.
    pub deadline: Duration,
    /// RunCommand busy (409): first wait, and how long in total to keep trying.
    pub busy_delay: Duration,
    pub busy_deadline: Duration,
    /// Long-running operations: poll interval when there is no `Retry-After`, and a bound on the
    /// whole wait (RunCommand scripts may run 90 minutes).
    pub poll_delay: Duration,
    pub max_poll_delay: Duration,
    pub lro_deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            deadline: Duration::from_secs(300),
            busy_delay: Duration::from_secs(10),
            busy_deadline: Duration::from_secs(30 * 60),
            poll_delay: Duration::from_secs(2),
            max_poll_delay: Duration::from_secs(15),
            lro_deadline: Duration::from_secs(95 * 60),
        }
    }
}

/// HTTP timeouts. `None` disables one: tests on tokio's paused clock need that, because the
/// paused clock jumps straight to the next timer whenever the runtime waits on I/O.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub request: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Some(Duration::from_secs(10)),
            request: Some(Duration::from_secs(120)),
        }
    }
}

/// Called with a short human status ("waiting for `start` of `vm1`") while an LRO waits, so a
/// spinner can show it. Never given secrets or URLs with queries.
pub type StatusHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Everything an `ArmClient` needs.
#[derive(Clone)]
pub struct ArmConfig {
    /// Base URL without trailing slash, e.g. `https://management.azure.com` or `http://127.0.0.1:8123`.
    pub endpoint: String,
    pub subscription: String,
    pub cloud: Cloud,
    pub api_versions: ApiVersions,
    pub token: TokenSource,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    pub status_hook: Option<StatusHook>,
    /// Extra trusted CA certificates (PEM), from `AZSSH_CA_BUNDLE`.
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for ArmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmConfig")
            .field("endpoint", &self.endpoint)
            .field("subscription", &self.subscription)
            .field("cloud", &self.cloud)
            .field("api_versions", &self.api_versions)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl ArmConfig {
    /// A config for a known endpoint, subscription and static token (tests, the emulator).
    pub fn with_static_token(endpoint: &str, subscription: &str, token: &str) -> Result<Self> {
        Ok(ArmConfig {
            endpoint: normalize_endpoint(endpoint)?,
            subscription: subscription.to_string(),
            cloud: Cloud::AzureCloud,
            api_versions: ApiVersions::default(),
            token: TokenSource::Static(Secret::new(token.to_string())),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            status_hook: None,
            ca_bundle: None,
        })
    }
}

/// Values given on the command line (each `None` when the flag was absent).
#[derive(Debug, Clone, Default)]
pub struct ConfigFlags {
    pub subscription: Option<String>,
    pub cloud: Option<String>,
    pub arm_endpoint: Option<String>,
}

/// Resolves the configuration. `env` looks a variable up (`|k| std::env::var(k).ok()` in the CLI).
pub fn resolve(flags: &ConfigFlags, env: &dyn Fn(&str) -> Option<String>) -> Result<ArmConfig> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let cloud = match nonempty(flags.cloud.clone()).or_else(|| nonempty(env("AZURE_CLOUD"))) {
        Some(name) => name.parse::<Cloud>()?,
        None => Cloud::AzureCloud,
    };
    let endpoint = match nonempty(flags.arm_endpoint.clone())
        .or_else(|| nonempty(env("AZSSH_ARM_ENDPOINT")))
    {
        Some(e) => normalize_endpoint(&e)?,
        None => cloud.arm_endpoint().to_string(),
    };
    let subscription = match nonempty(flags.subscription.clone())
        .or_else(|| nonempty(env("AZURE_SUBSCRIPTION_ID")))
    {
        Some(s) => s,
        None => az_default_subscription(env).ok_or(AzureError::NoSubscription)?,
    };
    let token = match nonempty(env("AZSSH_ACCESS_TOKEN")) {
        Some(t) => TokenSource::Static(Secret::new(t)),
        None => TokenSource::default_chain(cloud, env),
    };
    tracing::debug!(%endpoint, %subscription, %cloud, "resolved ARM configuration");
    Ok(ArmConfig {
        endpoint,
        subscription,
        cloud,
        api_versions: ApiVersions::default(),
        token,
        retry: RetryPolicy::default(),
        timeouts: Timeouts::default(),
        status_hook: None,
        ca_bundle: nonempty(env(crate::tls::CA_BUNDLE_ENV)).map(PathBuf::from),
    })
}

/// Any absolute http(s) URL; `http://` is allowed for the emulator and tests on loopback.
pub fn normalize_endpoint(raw: &str) -> Result<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let parsed =
        reqwest::Url::parse(trimmed).map_err(|_| AzureError::BadEndpoint(raw.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(AzureError::BadEndpoint(raw.to_string()));
    }
    Ok(trimmed.to_string())
}

/// The `az` CLI's profile: `$AZURE_CONFIG_DIR/azureProfile.json`, else `~/.azure/azureProfile.json`.
pub fn az_profile_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("AZURE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("azureProfile.json")),
        None => dirs::home_dir().map(|h| h.join(".azure").join("azureProfile.json")),
    }
}

/// The subscription `az account show` would use: the one with `isDefault: true`.
pub fn az_default_subscription(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let path = az_profile_path(env)?;
    let bytes = std::fs::read(&path).ok()?;
    let sub = parse_az_profile(&bytes);
    tracing::debug!(path = %path.display(), found = sub.is_some(), "read the az CLI profile");
    sub
}

/// Parses `azureProfile.json`, which `az` writes with a UTF-8 BOM.
pub fn parse_az_profile(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Profile {
        #[serde(default)]
        subscriptions: Vec<Sub>,
    }
    #[derive(serde::Deserialize)]
    struct Sub {
        id: String,
        #[serde(default, rename = "isDefault")]
        is_default: bool,
    }
    let profile: Profile = serde_json::from_slice(super::error::strip_bom(bytes)).ok()?;
    profile
        .subscriptions
        .into_iter()
        .find(|s| s.is_default)
        .map(|s| s.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn no_profile() -> (&'static str, String) {
        ("AZURE_CONFIG_DIR", "/nonexistent/azssh-test".to_string())
    }

    #[test]
    fn flag_beats_environment() {
        let (k, v) = no_profile();
        let env = env_of(&[
            ("AZURE_SUBSCRIPTION_ID", "from-env"),
            ("AZURE_CLOUD", "AzureChinaCloud"),
            (k, &v),
        ]);
        let flags = ConfigFlags {
            subscription: Some("from-flag".into()),
            cloud: Some("azureusgovernment".into()),
            arm_endpoint: None,
        };
        let c = resolve(&flags, &env).ok();
        assert_eq!(
            c.as_ref().map(|c| c.subscription.as_str()),
            Some("from-flag")
        );
        assert_eq!(c.as_ref().map(|c| c.cloud), Some(Cloud::AzureUSGovernment));
        assert_eq!(
            c.as_ref().map(|c| c.endpoint.as_str()),
            Some("https://management.usgovcloudapi.net")
        );
    }

    #[test]
    fn environment_sets_endpoint_and_static_token() {
        let env = env_of(&[
            ("AZURE_SUBSCRIPTION_ID", "sub"),
            ("AZSSH_ARM_ENDPOINT", "http://127.0.0.1:4000/"),
            ("AZSSH_ACCESS_TOKEN", "tok"),
        ]);
        let c = resolve(&ConfigFlags::default(), &env).ok();
        assert_eq!(
            c.as_ref().map(|c| c.endpoint.as_str()),
            Some("http://127.0.0.1:4000")
        );
        assert!(matches!(c.map(|c| c.token), Some(TokenSource::Static(t)) if t.expose() == "tok"));
    }

    #[test]
    fn az_profile_default_subscription_is_used_last() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let profile = "\u{feff}{\"installationId\":\"x\",\"subscriptions\":[{\"id\":\"other\",\"isDefault\":false},{\"id\":\"the-default\",\"isDefault\":true}]}";
        std::fs::write(dir.path().join("azureProfile.json"), profile).ok();
        let d = dir.path().to_string_lossy().to_string();
        let env = env_of(&[("AZURE_CONFIG_DIR", &d), ("AZSSH_ACCESS_TOKEN", "t")]);
        let c = resolve(&ConfigFlags::default(), &env).ok();
        assert_eq!(c.map(|c| c.subscription).as_deref(), Some("the-default"));
    }

    #[test]
    fn missing_subscription_says_how_to_set_it() {
        let (k, v) = no_profile();
        let env = env_of(&[(k, &v), ("AZSSH_ACCESS_TOKEN", "t")]);
        let err = resolve(&ConfigFlags::default(), &env).err();
        use crate::error::UserError;
        let hint = err.as_ref().and_then(|e| e.hint()).unwrap_or_default();
        assert_eq!(err.map(|e| e.kind()), Some("azure.no_subscription"));
        assert!(
            hint.contains("--subscription") && hint.contains("AZURE_SUBSCRIPTION_ID"),
            "{hint}"
        );
    }

    #[test]
    fn bad_cloud_and_endpoint_are_errors() {
        let env = env_of(&[("AZURE_SUBSCRIPTION_ID", "s"), ("AZURE_CLOUD", "Mars")]);
        assert!(matches!(
            resolve(&ConfigFlags::default(), &env),
            Err(AzureError::UnknownCloud(_))
        ));
        let env = env_of(&[
            ("AZURE_SUBSCRIPTION_ID", "s"),
            ("AZSSH_ARM_ENDPOINT", "management.azure.com"),
        ]);
        assert!(matches!(
            resolve(&ConfigFlags::default(), &env),
            Err(AzureError::BadEndpoint(_))
        ));
    }

    #[test]
    fn api_versions_default_per_provider() {
        let v = ApiVersions::default();
        assert_eq!(v.get(Provider::Compute), "2025-04-01");
        assert_eq!(v.get(Provider::Network), "2024-07-01");
        assert_eq!(v.get(Provider::ResourceGraph), "2024-04-01");
        assert_eq!(v.get(Provider::Security), "2020-01-01");
    }
}
