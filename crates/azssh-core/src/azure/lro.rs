//! Long-running operations, exactly as ARM.md §1.3: prefer `Azure-AsyncOperation`, else
//! `Location`, else poll the resource's `provisioningState`; honour `Retry-After`; `Failed` and
//! `Canceled` become errors carrying the operation's `error`; PUT/PATCH end with a GET of the
//! original URI; a POST with a result (RunCommand) reads it from `Location` or
//! `properties.output`.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use super::client::{ArmClient, ArmResponse, Call, Retry, redact};
use super::config::Provider;
use super::error::{AzureError, ErrorDetail, Result};

const TERMINAL: [&str; 3] = ["Succeeded", "Failed", "Canceled"];

fn is_terminal(state: &str) -> bool {
    TERMINAL.iter().any(|t| t.eq_ignore_ascii_case(state))
}

impl ArmClient {
    /// PUT a resource and wait until it is provisioned; returns the final resource.
    pub async fn put_lro<T: DeserializeOwned>(
        &self,
        path: &str,
        provider: Provider,
        body: &Value,
        what: &str,
    ) -> Result<T> {
        self.put_lro_if_match(path, provider, body, what, None)
            .await
    }

    /// `put_lro` conditional on the resource's etag (`If-Match`): a resource changed since it
    /// was read answers 412 `PreconditionFailed` and nothing is written.
    pub async fn put_lro_if_match<T: DeserializeOwned>(
        &self,
        path: &str,
        provider: Provider,
        body: &Value,
        what: &str,
        if_match: Option<&str>,
    ) -> Result<T> {
        let url = self.url(path, provider, &[])?;
        let value = self
            .start_lro(
                Method::PUT,
                url.clone(),
                Some(body),
                Retry::Idempotent,
                what,
                if_match,
            )
            .await?;
        serde_json::from_value(value).map_err(|e| AzureError::Decode {
            method: "PUT".into(),
            path: redact(&url),
            reason: e.to_string(),
        })
    }

    /// POST an action and wait for it; returns the result body, if the action has one.
    pub async fn post_lro(
        &self,
        path: &str,
        provider: Provider,
        body: Option<&Value>,
        retry: Retry,
        what: &str,
    ) -> Result<Value> {
        let url = self.url(path, provider, &[])?;
        self.start_lro(Method::POST, url, body, retry, what, None)
            .await
    }

    /// DELETE a resource and wait until it is gone. A 404 counts as already deleted.
    pub async fn delete_lro(&self, path: &str, provider: Provider, what: &str) -> Result<()> {
        self.delete_lro_if_match(path, provider, what, None).await
    }

    /// `delete_lro` conditional on the resource's etag (`If-Match`, 412 when it changed).
    pub async fn delete_lro_if_match(
        &self,
        path: &str,
        provider: Provider,
        what: &str,
        if_match: Option<&str>,
    ) -> Result<()> {
        let url = self.url(path, provider, &[])?;
        match self
            .start_lro(Method::DELETE, url, None, Retry::Idempotent, what, if_match)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn start_lro(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        retry: Retry,
        what: &str,
        if_match: Option<&str>,
    ) -> Result<Value> {
        let body = match body {
            Some(b) => Some(Bytes::from(
                serde_json::to_vec(b).map_err(|e| AzureError::InvalidInput(e.to_string()))?,
            )),
            None => None,
        };
        let initial = self
            .send(Call {
                method: method.clone(),
                url: url.clone(),
                body,
                retry,
                if_match: if_match.map(str::to_string),
            })
            .await?;
        let span = tracing::debug_span!("lro", what, method = %method, path = %redact(&url));
        Poller {
            client: self,
            kind: super::poll_schedule::PollSchedule::kind(&method, &url),
            method,
            original: url,
            what,
            started: Instant::now(),
        }
        .run(initial)
        .instrument(span)
        .await
    }
}

struct Poller<'a> {
    client: &'a ArmClient,
    /// What kind of operation this is, for the shared `PollSchedule`.
    kind: String,
    method: Method,
    original: Url,
    what: &'a str,
    started: Instant,
}

impl Poller<'_> {
    async fn run(&self, initial: ArmResponse) -> Result<Value> {
        let async_op = initial.header("azure-asyncoperation").map(str::to_string);
        let location = initial.header("location").map(str::to_string);
        // From here Azure has accepted the operation: dropping this future (Ctrl-C, a deadline,
        // `--grace` running out) stops our polling, not the operation.
        let mut accepted = Accepted {
            what: self.what,
            method: self.method.clone(),
            operation: async_op
                .as_deref()
                .or(location.as_deref())
                .and_then(|u| self.client.absolute_url(u).ok())
                .unwrap_or_else(|| self.original.clone()),
            done: false,
        };
        let result = self.follow(initial, async_op, location).await;
        accepted.done = true;
        result
    }

    async fn follow(
        &self,
        initial: ArmResponse,
        async_op: Option<String>,
        location: Option<String>,
    ) -> Result<Value> {
        let body = self.json(&self.original, &initial)?;
        let mut delay = initial.retry_after().filter(|d| !d.is_zero());

        if let Some(op) = async_op {
            let op_url = self.client.absolute_url(&op)?;
            let status_body = self.poll_async_operation(&op_url, &mut delay).await?;
            return match self.method {
                Method::PUT | Method::PATCH => self.get(&self.original).await,
                // The Compute RP puts a POST's result (RunCommand's output) in the status body
                // too (ARM.md §1.3, recorded): read it once, not again from `Location`.
                Method::POST if status_body.pointer("/properties/output").is_some() => {
                    Ok(status_body
                        .pointer("/properties/output")
                        .cloned()
                        .unwrap_or(Value::Null))
                }
                Method::POST => match location {
                    Some(loc) => {
                        let loc_url = self.client.absolute_url(&loc)?;
                        self.poll_location(&loc_url, &mut None, false).await
                    }
                    None => Ok(status_body
                        .pointer("/properties/output")
                        .cloned()
                        .unwrap_or(Value::Null)),
                },
                _ => Ok(Value::Null),
            };
        }
        if let Some(loc) = location
            && matches!(initial.status.as_u16(), 201 | 202)
        {
            let loc_url = self.client.absolute_url(&loc)?;
            let result = self.poll_location(&loc_url, &mut delay, true).await?;
            return match self.method {
                Method::PUT | Method::PATCH => self.get(&self.original).await,
                _ => Ok(result),
            };
        }
        let state = provisioning_state(&body);
        if matches!(self.method, Method::PUT | Method::PATCH)
            && matches!(initial.status.as_u16(), 200 | 201)
            && state.as_deref().is_some_and(|s| !is_terminal(s))
        {
            return self.poll_resource(&mut delay).await;
        }
        Ok(body)
    }

    /// Tells the shared schedule how long this operation took.
    fn learn(&self, status_body: Option<&Value>) {
        self.client
            .poll_schedule()
            .learn(&self.kind, status_body, self.started.elapsed());
    }

    fn json(&self, url: &Url, resp: &ArmResponse) -> Result<Value> {
        resp.json_value().map_err(|e| AzureError::Decode {
            method: self.method.to_string(),
            path: redact(url),
            reason: e.to_string(),
        })
    }

    /// Waits `Retry-After` when the last answer had one, else our own growing interval. A
    /// `Retry-After: 0` counts as no hint (azure-core reads it the same way): polling at once in
    /// a loop would only spend the Compute RP's GetOperation bucket.
    ///
    /// The first poll also waits out what this kind of operation is expected to take
    /// (`poll_schedule`), so a RunCommand costs one or two polls rather than one per hint.
    async fn wait(&self, delay: &mut Option<Duration>, polls: u32) -> Result<()> {
        let policy = self.client.retry_policy();
        let own = policy
            .poll_delay
            .mul_f64(1.5f64.powi(polls.min(20) as i32))
            .min(policy.max_poll_delay);
        let d = super::poll_schedule::next_wait(
            delay.take(),
            self.client.poll_schedule().expected(&self.kind),
            self.started.elapsed(),
            polls,
            own,
            policy.poll_delay.min(Duration::from_millis(250)),
        );
        if self.started.elapsed() + d > policy.lro_deadline {
            return Err(AzureError::OperationTimeout {
                what: self.what.to_string(),
                seconds: policy.lro_deadline.as_secs(),
            });
        }
        tokio::time::sleep(d).await;
        Ok(())
    }

    async fn get_raw(&self, url: &Url) -> Result<ArmResponse> {
        self.client
            .send(Call {
                method: Method::GET,
                url: url.clone(),
                body: None,
                retry: Retry::Idempotent,
                if_match: None,
            })
            .await
    }

    async fn get(&self, url: &Url) -> Result<Value> {
        let resp = self.get_raw(url).await?;
        self.json(url, &resp)
    }

    async fn poll_async_operation(&self, url: &Url, delay: &mut Option<Duration>) -> Result<Value> {
        self.client.status(&format!("waiting for {}", self.what));
        let mut polls: u32 = 0;
        loop {
            polls = polls.saturating_add(1);
            let polls = polls - 1;
            self.wait(delay, polls).await?;
            let resp = self.get_raw(url).await?;
            *delay = resp.retry_after().filter(|d| !d.is_zero());
            let body = self.json(url, &resp)?;
            let status = body
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("InProgress")
                .to_string();
            tracing::debug!(what = self.what, status, "operation status");
            if status.eq_ignore_ascii_case("Succeeded") {
                self.learn(Some(&body));
                return Ok(body);
            }
            if status.eq_ignore_ascii_case("Failed") || status.eq_ignore_ascii_case("Canceled") {
                return Err(self.failed(&status, body.get("error")));
            }
            if let Some(p) = body
                .get("percentComplete")
                .and_then(Value::as_f64)
                .filter(|p| *p > 0.0)
            {
                self.client
                    .status(&format!("waiting for {} ({p:.0}%)", self.what));
            }
        }
    }

    /// `202` means keep polling; `200`/`204` means done, with the result as body (if any).
    async fn poll_location(
        &self,
        url: &Url,
        delay: &mut Option<Duration>,
        wait_first: bool,
    ) -> Result<Value> {
        self.client.status(&format!("waiting for {}", self.what));
        let mut polls: u32 = 0;
        loop {
            if wait_first || polls > 0 {
                self.wait(delay, polls).await?;
            }
            let resp = self.get_raw(url).await?;
            if resp.status.as_u16() != 202 {
                if wait_first {
                    self.learn(None);
                }
                return self.json(url, &resp);
            }
            *delay = resp.retry_after().filter(|d| !d.is_zero());
            polls = polls.saturating_add(1);
        }
    }

    async fn poll_resource(&self, delay: &mut Option<Duration>) -> Result<Value> {
        self.client.status(&format!("waiting for {}", self.what));
        let mut polls: u32 = 0;
        loop {
            polls = polls.saturating_add(1);
            let polls = polls - 1;
            self.wait(delay, polls).await?;
            let resp = self.get_raw(&self.original).await?;
            *delay = resp.retry_after().filter(|d| !d.is_zero());
            let body = self.json(&self.original, &resp)?;
            match provisioning_state(&body) {
                Some(s) if s.eq_ignore_ascii_case("Succeeded") => {
                    self.learn(None);
                    return Ok(body);
                }
                Some(s) if is_terminal(&s) => {
                    let error = body
                        .pointer("/properties/error")
                        .or_else(|| body.get("error"));
                    return Err(self.failed(&s, error));
                }
                None => return Ok(body),
                Some(_) => {}
            }
        }
    }

    fn failed(&self, status: &str, error: Option<&Value>) -> AzureError {
        let detail: ErrorDetail = error
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        AzureError::OperationFailed {
            what: self.what.to_string(),
            status: status.to_string(),
            code: if detail.code.is_empty() {
                status.to_string()
            } else {
                detail.code
            },
            message: if detail.message.is_empty() {
                "no error details given".to_string()
            } else {
                detail.message
            },
            details: detail.details,
        }
    }
}

/// Says, when an accepted operation's wait is abandoned, that Azure may still complete it and
/// where to look: ARM has no cancel for most operations (RunCommand and VM start run to the end).
struct Accepted<'a> {
    what: &'a str,
    method: Method,
    operation: Url,
    done: bool,
}

impl Accepted<'_> {
    fn message(&self) -> String {
        format!(
            "stopped waiting for {} ({}), but Azure had accepted it: the operation may still complete on Azure. Check it with a GET of {} (with a bearer token), or in the portal's Activity log for the resource (`az monitor activity-log list --offset 1h`)",
            self.what,
            self.method,
            redact(&self.operation)
        )
    }
}

impl Drop for Accepted<'_> {
    fn drop(&mut self) {
        if !self.done {
            crate::notice::warn(&self.message());
        }
    }
}

fn provisioning_state(body: &Value) -> Option<String> {
    body.pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_after_accept_says_operation_may_complete() {
        let op = Url::parse(
            "https://management.azure.com/subscriptions/s/providers/Microsoft.Compute/locations/westeurope/operations/op-1?api-version=2024-07-01&sig=SECRET",
        )
        .unwrap();
        let guard = Accepted {
            what: "RunCommand on web01",
            method: Method::POST,
            operation: op,
            done: false,
        };
        let m = guard.message();
        assert!(m.contains("may still complete on Azure"), "{m}");
        assert!(m.contains("/locations/westeurope/operations/op-1"), "{m}");
        assert!(m.contains("Activity log"), "{m}");
        assert!(!m.contains("SECRET"), "{m}");
    }
}
