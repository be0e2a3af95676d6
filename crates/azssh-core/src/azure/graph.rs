//! Azure Resource Graph queries (`POST /providers/Microsoft.ResourceGraph/resources`, ARM.md §7),
//! paged with `$skipToken` in the request body rather than `nextLink`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::client::{ArmClient, Retry};
use super::config::Provider;
use super::error::Result;

/// One page of `QueryResponse`. `resultTruncated` is a string (`"true"`/`"false"`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueryResponse {
    #[serde(default, rename = "totalRecords")]
    pub total_records: i64,
    #[serde(default)]
    pub count: i64,
    #[serde(default, rename = "resultTruncated")]
    pub result_truncated: Option<Value>,
    #[serde(default, rename = "$skipToken")]
    pub skip_token: Option<String>,
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Clone, Default)]
pub struct GraphOptions {
    /// Subscriptions to query; empty means the client's own.
    pub subscriptions: Vec<String>,
    /// Rows per page (1..=1000); `None` lets the service choose.
    pub page_size: Option<u32>,
    /// Stop after this many rows.
    pub max_rows: Option<usize>,
}

/// The request body for one page.
pub fn query_body(
    subscriptions: &[String],
    query: &str,
    page_size: Option<u32>,
    skip_token: Option<&str>,
) -> Value {
    let mut options = Map::new();
    options.insert("resultFormat".into(), json!("objectArray"));
    if let Some(top) = page_size {
        options.insert("$top".into(), json!(top.clamp(1, 1000)));
    }
    if let Some(t) = skip_token {
        options.insert("$skipToken".into(), json!(t));
    }
    json!({"subscriptions": subscriptions, "query": query, "options": options})
}

/// Runs `query` and returns every row (as objects), following `$skipToken`. Project `id` in the
/// query: the service needs it to page in a stable order.
pub async fn graph_query(
    client: &ArmClient,
    query: &str,
    opts: &GraphOptions,
) -> Result<Vec<Value>> {
    let subscriptions = if opts.subscriptions.is_empty() {
        vec![client.subscription().to_string()]
    } else {
        opts.subscriptions.clone()
    };
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let body = query_body(&subscriptions, query, opts.page_size, token.as_deref());
        // A query has no side effects, so it is safe to repeat.
        let page: QueryResponse = client
            .post_json(
                "/providers/Microsoft.ResourceGraph/resources",
                Provider::ResourceGraph,
                &body,
                Retry::Idempotent,
            )
            .await?;
        if let Value::Array(items) = page.data {
            rows.extend(items);
        }
        // A query that cannot be paged (`take`/`limit`, or only dynamic columns) answers
        // `resultTruncated: "true"` without a `$skipToken` (learn.microsoft.com
        // governance/resource-graph/concepts/paging-results): acting on that first page
        // silently would skip VMs, so it fails.
        let truncated = match &page.result_truncated {
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            Some(Value::Bool(b)) => *b,
            _ => false,
        };
        let has_token = page.skip_token.as_deref().is_some_and(|t| !t.is_empty());
        if truncated && !has_token && opts.max_rows.is_none_or(|m| rows.len() < m) {
            return Err(crate::azure::AzureError::GraphTruncated { rows: rows.len() });
        }
        if opts.max_rows.is_some_and(|m| rows.len() >= m) {
            rows.truncate(opts.max_rows.unwrap_or(usize::MAX));
            return Ok(rows);
        }
        match page.skip_token.filter(|t| !t.is_empty()) {
            Some(t) if token.as_deref() != Some(t.as_str()) => token = Some(t),
            _ => return Ok(rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_body_carries_the_skip_token() {
        let b = query_body(&["s".into()], "Resources | project id", None, Some("tok"));
        assert_eq!(b.pointer("/options/$skipToken"), Some(&json!("tok")));
        assert_eq!(b.pointer("/subscriptions/0"), Some(&json!("s")));
    }
}
