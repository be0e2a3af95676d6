//! Paging: ARM list operations answer `{"value": [...], "nextLink": "<absolute URL>"}`; GET
//! `nextLink` exactly as given until it is absent (ARM.md §1.4). Resource Graph pages
//! differently (`graph.rs`).

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::client::{ArmClient, Call, Retry, decode, redact};
use super::config::Provider;
use super::error::{AzureError, Result};

impl ArmClient {
    /// Every item of a pageable list, following `nextLink` until it is absent (ARM.md §1.4).
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        provider: Provider,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        self.for_each_page(path, provider, query, |page: Vec<T>| {
            items.extend(page);
            true
        })
        .await?;
        Ok(items)
    }

    /// Calls `each` with every page; stop early by returning `false`.
    pub async fn for_each_page<T: DeserializeOwned>(
        &self,
        path: &str,
        provider: Provider,
        query: &[(&str, &str)],
        mut each: impl FnMut(Vec<T>) -> bool,
    ) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Page<T> {
            #[serde(default = "Vec::new")]
            value: Vec<T>,
            #[serde(default, rename = "nextLink")]
            next_link: Option<String>,
        }
        let mut url = self.url(path, provider, query)?;
        let mut seen = std::collections::HashSet::new();
        loop {
            let resp = self
                .send(Call {
                    method: Method::GET,
                    url: url.clone(),
                    body: None,
                    retry: Retry::Idempotent,
                    if_match: None,
                })
                .await?;
            let page: Page<T> = decode(&Method::GET, &url, &resp)?;
            if !each(page.value) {
                return Ok(());
            }
            match page.next_link.filter(|l| !l.trim().is_empty()) {
                Some(next) => {
                    if !seen.insert(next.clone()) {
                        return Err(AzureError::Decode {
                            method: "GET".into(),
                            path: redact(&url),
                            reason: "`nextLink` repeats an earlier page".into(),
                        });
                    }
                    url = self.absolute_url(&next)?;
                }
                None => return Ok(()),
            }
        }
    }
}
