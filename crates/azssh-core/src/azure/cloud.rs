//! `Cloud`: the Azure clouds we know, with their Resource Manager endpoint and token scope
//! (values from azure-cli's `cloud.py`, see ARM.md §10).

use std::fmt;
use std::str::FromStr;

use super::error::AzureError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Cloud {
    #[default]
    AzureCloud,
    AzureUSGovernment,
    AzureChinaCloud,
}

impl Cloud {
    pub const ALL: [Cloud; 3] = [
        Cloud::AzureCloud,
        Cloud::AzureUSGovernment,
        Cloud::AzureChinaCloud,
    ];

    /// The name `az cloud list` uses, which `--cloud` / `AZURE_CLOUD` accept.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::AzureCloud => "AzureCloud",
            Cloud::AzureUSGovernment => "AzureUSGovernment",
            Cloud::AzureChinaCloud => "AzureChinaCloud",
        }
    }

    /// Resource Manager base URL, without a trailing slash.
    pub fn arm_endpoint(self) -> &'static str {
        match self {
            Cloud::AzureCloud => "https://management.azure.com",
            Cloud::AzureUSGovernment => "https://management.usgovcloudapi.net",
            Cloud::AzureChinaCloud => "https://management.chinacloudapi.cn",
        }
    }

    /// The scope to request an ARM token for.
    pub fn token_scope(self) -> &'static str {
        match self {
            Cloud::AzureCloud => "https://management.azure.com/.default",
            Cloud::AzureUSGovernment => "https://management.usgovcloudapi.net/.default",
            Cloud::AzureChinaCloud => "https://management.chinacloudapi.cn/.default",
        }
    }

    /// The matching azure_core cloud, so credentials talk to the right authority host.
    pub fn core_configuration(self) -> azure_core::cloud::CloudConfiguration {
        use azure_core::cloud::CloudConfiguration as C;
        match self {
            Cloud::AzureCloud => C::AzurePublic,
            Cloud::AzureUSGovernment => C::AzureGovernment,
            Cloud::AzureChinaCloud => C::AzureChina,
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cloud {
    type Err = AzureError;

    /// Case-insensitive, as `az` is.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Cloud::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| AzureError::UnknownCloud(wanted.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_names_parse_case_insensitively() {
        assert_eq!("azurecloud".parse::<Cloud>().ok(), Some(Cloud::AzureCloud));
        assert_eq!(
            " AZUREUSGOVERNMENT ".parse::<Cloud>().ok(),
            Some(Cloud::AzureUSGovernment)
        );
        assert_eq!(
            "AzureChinaCloud".parse::<Cloud>().ok(),
            Some(Cloud::AzureChinaCloud)
        );
    }

    #[test]
    fn unknown_cloud_lists_valid_names() {
        let err = "AzureGermanCloud"
            .parse::<Cloud>()
            .err()
            .map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(msg.contains("`AzureGermanCloud`"));
        assert!(
            msg.contains("AzureCloud")
                && msg.contains("AzureUSGovernment")
                && msg.contains("AzureChinaCloud")
        );
    }

    #[test]
    fn each_cloud_has_https_endpoint_and_default_scope() {
        for c in Cloud::ALL {
            assert!(c.arm_endpoint().starts_with("https://"));
            assert!(c.token_scope().starts_with(c.arm_endpoint()));
            assert!(c.token_scope().ends_with("/.default"));
        }
    }
}
