//! The ARM emulator over real HTTP: its answers have the shape of Microsoft's REST examples,
//! its LRO header sequences match the recorded traffic, and it throttles, conflicts and fails
//! the way Azure does (reproducibly, from a seed).
#![allow(clippy::unwrap_used)]

mod behaviour;
mod guest_scripts;
mod wire;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azssh::emulator::{
    EmulatorHandle, GuestFactory, GuestOutput, GuestRuntime, GuestSpec, PowerState,
};
use azssh_emulator::testing::{self, EmuBuilder};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const COMPUTE: &str = "2025-04-01";
const NETWORK: &str = "2024-07-01";

/// A test double for the Windows guest: echoes each script back on stdout and records it.
#[derive(Default)]
struct EchoGuest {
    scripts: Mutex<Vec<String>>,
    sshd: Mutex<bool>,
}

impl GuestRuntime for EchoGuest {
    fn run_powershell(&self, script: &str, _params: &[(String, String)]) -> GuestOutput {
        self.scripts.lock().unwrap().push(script.to_string());
        GuestOutput {
            stdout: script.to_string(),
            stderr: "warning: echo guest".into(),
            exit_code: 0,
        }
    }
    fn install_openssh_extension(&self) -> Result<(), String> {
        *self.sshd.lock().unwrap() = true;
        Ok(())
    }
    fn sshd_listening(&self) -> bool {
        *self.sshd.lock().unwrap()
    }
}

struct EchoFactory;
impl GuestFactory for EchoFactory {
    fn create(&self, _spec: &GuestSpec) -> Arc<dyn GuestRuntime> {
        Arc::new(EchoGuest::default())
    }
}

/// The shared fixture with the echo guests, and an HTTP client for raw ARM calls.
struct Emu {
    handle: Arc<EmulatorHandle>,
    http: reqwest::Client,
    // Declared last: the servers stop when the fixture drops.
    _fixture: testing::Emu,
}

/// The fixture at Azure's own pace (speed 1) and with ARM's throttling on, as these wire tests
/// measure them; the tests that need less say so (`.speed(1000.0)`, `.throttling(false)`).
fn arm() -> EmuBuilder {
    testing::Emu::builder().speed(1.0).throttling(true)
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Emu {
    async fn start(builder: EmuBuilder) -> Emu {
        let fixture = builder.guest_factory(Arc::new(EchoFactory)).start().await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Emu {
            handle: fixture.handle.clone(),
            http,
            _fixture: fixture,
        }
    }
    async fn fast() -> Emu {
        Self::start(arm().speed(1000.0).vms(24)).await
    }
    /// A world big enough to hold JIT policies (60 VMs), fast.
    async fn with_jit_policies() -> Emu {
        Self::start(arm().vms(60).speed(1000.0)).await
    }
    fn sub(&self) -> String {
        format!("/subscriptions/{}", self.handle.subscription_id())
    }
    fn url(&self, path: &str, api: &str) -> String {
        let base = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.handle.endpoint())
        };
        if api.is_empty() || base.contains("api-version=") {
            base
        } else if base.contains('?') {
            format!("{base}&api-version={api}")
        } else {
            format!("{base}?api-version={api}")
        }
    }
    async fn call(&self, method: Method, path: &str, api: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .http
            .request(method, self.url(path, api))
            .bearer_auth(self.handle.token().expose());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        Answer {
            status,
            headers,
            body,
        }
    }
    async fn get(&self, path: &str, api: &str) -> Answer {
        self.call(Method::GET, path, api, None).await
    }
    /// A running VM with a public IP, and its resource path.
    fn running_vm(&self) -> (String, String) {
        let vm = self
            .handle
            .vms()
            .into_iter()
            .find(|v| v.power_state == PowerState::Running && v.public_ip.is_some())
            .unwrap();
        (vm.resource_group.clone(), vm.name.clone())
    }
    fn vm_path(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}",
            self.sub()
        )
    }
    /// Every JIT policy of the subscription (`jitNetworkAccessPolicies`, list body).
    async fn jit_policies(&self) -> Value {
        let path = format!(
            "{}/providers/Microsoft.Security/jitNetworkAccessPolicies",
            self.sub()
        );
        self.get(&path, "2020-01-01").await.body
    }
    /// `POST …/runCommand` on the VM with `body`.
    async fn run_command(&self, rg: &str, name: &str, body: Value) -> Answer {
        let path = format!("{}/runCommand", self.vm_path(rg, name));
        self.call(Method::POST, &path, COMPUTE, Some(body)).await
    }
    /// Polls an `Azure-AsyncOperation` URL until it is terminal; returns every status body
    /// seen. As an Azure client polls: a 429 (these fixtures throttle, and a poll every few ms
    /// empties the read bucket of 250 in about a second if the operation's timer is late) is
    /// waited out for its `Retry-After`, and the wait is bounded by time, not by a count.
    async fn poll(&self, url: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while tokio::time::Instant::now() < deadline {
            let a = self.get(url, "").await;
            if a.status == StatusCode::TOO_MANY_REQUESTS {
                let wait = a.header("retry-after").and_then(|s| s.parse().ok());
                tokio::time::sleep(Duration::from_secs(wait.unwrap_or(1))).await;
                continue;
            }
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
            let status = a.body["status"].as_str().unwrap().to_string();
            seen.push(a.body);
            if status != "InProgress" {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("operation never finished within 120 s");
    }
}

fn example(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/arm-examples")
        .join(rel);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field both documents have must have the same JSON type (recursively), and every
/// `required` pointer must be present in both.
fn assert_shape(actual: &Value, reference: &Value, required: &[&str]) {
    fn walk(a: &Value, r: &Value, at: &str) {
        assert_eq!(
            kind(a),
            kind(r),
            "type of `{at}` differs: emulator {a} vs reference {r}"
        );
        match (a, r) {
            (Value::Object(a), Value::Object(r)) => {
                for (k, rv) in r {
                    if let Some(av) = a.get(k) {
                        walk(av, rv, &format!("{at}/{k}"));
                    }
                }
            }
            (Value::Array(a), Value::Array(r)) => {
                if let (Some(a0), Some(r0)) = (a.first(), r.first()) {
                    walk(a0, r0, &format!("{at}/0"));
                }
            }
            _ => {}
        }
    }
    walk(actual, reference, "");
    for p in required {
        assert!(reference.pointer(p).is_some(), "reference lacks `{p}`");
        assert!(
            actual.pointer(p).is_some(),
            "emulator answer lacks `{p}`: {actual:#}"
        );
    }
}

fn ssh_rule(priority: u16, source: &str) -> Value {
    json!({"properties": {"protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22", "sourceAddressPrefix": source, "destinationAddressPrefix": "*", "access": "Allow", "priority": priority, "direction": "Inbound"}})
}
