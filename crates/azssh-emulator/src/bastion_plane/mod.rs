//! Azure Bastion's data plane (BASTION.md §2, §3), served over TLS on loopback: one listener per
//! bastion at `127.0.0.1:PORT`, which is the bastion's `properties.dnsName`, so a client's
//! `https://{dnsName}/api/tokens` and `wss://{dnsName}/webtunnelv2/{token}` reach it unchanged.
//! The certificate chains to a CA generated at start ([`ca`]), exported as `AZSSH_CA_BUNDLE`.
//!
//! - `POST /api/tokens` (form: `resourceId`, `protocol=tcptunnel`, `workloadHostPort`,
//!   `aztoken`, optional `token`/`hostname`; header `X-Node-Id` once known) → 200
//!   `{"authToken","nodeId","websocketToken",...}`. The ARM access token authenticates.
//! - `GET /webtunnelv2/{websocketToken}?X-Node-Id=..` → WebSocket (single-use token) carrying one
//!   TCP stream to the VM's private address ([`tunnel`]).
//! - `DELETE /api/tokens/{authToken}` (`X-Node-Id`) → 204, 404 when already gone; ends the tunnel.
//! - Developer SKU: `POST /api/connection` (JSON) only.
//! - Errors: `{"message": ...}` ([`errors`]).
//!
//! The bastion connects to the VM from its `AzureBastionSubnet` address (the loopback image of
//! `10.a.32.4`, see `bastion.rs`), so the guest's NSG check sees the bastion subnet as source.
//! Port 22 goes to the guest's sshd on its private image; 3389 to the guest's RDP listener,
//! which the emulator serves in process after the same NSG check.

pub mod ca;
pub mod errors;
pub mod tunnel;

#[cfg(all(test, feature = "testing"))]
mod tests;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use base64::Engine;
use hyper::body::Incoming;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use self::ca::Authority;
use self::errors::PlaneError;
use self::tunnel::{Ending, ResettableStream, TunnelFaults};
use super::bastion::{self, Sku, private_image};
use super::error::EmulatorError;
use super::server::{App, lock, parse_query};

/// How long the bastion waits for the VM to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One token POST's session.
struct Session {
    bastion: usize,
    node: usize,
    vm: usize,
    port: u16,
    ws_token: String,
    ws_used: bool,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Sessions {
    by_auth: HashMap<String, Session>,
    ws_to_auth: HashMap<String, String>,
    /// Every authToken ever issued, by bastion (a later POST may name one in `token`).
    issued: HashSet<(usize, String)>,
    next_node: usize,
}

/// Faults the tests arm ([`BastionFaults`]) or the seeded `ws_reset` probability draws.
struct PlaneFaults {
    /// (index of the WebSocket, in upgrade order from 1; bytes after which it is cut)
    resets: Vec<(u64, u64)>,
    idle: Option<Duration>,
    ws_reset: f64,
    rng: StdRng,
}

/// The running data plane of every bastion of the world.
pub struct Plane {
    app: Weak<App>,
    authority: Authority,
    /// Holds `ca.pem`; removed on drop.
    _dir: tempfile::TempDir,
    sessions: Mutex<Sessions>,
    faults: Mutex<PlaneFaults>,
    opened: AtomicU64,
    /// The guests' sshd port (`AZSSH_SSH_PORT`), when guests are wired in.
    guest_port: Option<u16>,
    /// Two node ids per bastion (its scale units), in bastion order.
    nodes: Vec<[String; 2]>,
    cancel: CancellationToken,
}

/// Arms faults on the data plane's WebSockets (tests: `emu.handle.bastion_faults()`).
#[derive(Clone)]
pub struct BastionFaults(Arc<Plane>);

impl BastionFaults {
    /// Cuts the `n`-th WebSocket upgraded from now on (1-based, in upgrade order) once
    /// `after_bytes` bytes have been relayed through it (both directions): a TCP RST, no Close.
    pub fn reset_websocket(&self, n: u64, after_bytes: u64) {
        let base = self.0.opened.load(Ordering::SeqCst);
        lock(&self.0.faults)
            .resets
            .push((base + n.max(1), after_bytes));
    }

    /// Drops every WebSocket idle (no byte either way) for `after`; `None` turns it off.
    pub fn idle_timeout(&self, after: Option<Duration>) {
        lock(&self.0.faults).idle = after;
    }

    /// WebSockets upgraded so far.
    pub fn websockets_opened(&self) -> u64 {
        self.0.opened.load(Ordering::SeqCst)
    }
}

fn random_token(rng: &mut impl Rng) -> String {
    let bytes: [u8; 32] = rng.random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn reply(status: StatusCode, body: Option<Value>) -> Response<Body> {
    let has_body = body.is_some();
    let mut resp = Response::new(Body::from(body.map(|b| b.to_string()).unwrap_or_default()));
    *resp.status_mut() = status;
    if has_body {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    resp.headers_mut()
        .insert("x-ms-emulator", HeaderValue::from_static("azssh"));
    resp
}

fn refuse(e: PlaneError) -> Response<Body> {
    reply(e.status, Some(e.body()))
}

/// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}`.
fn parse_vm_id(id: &str) -> Option<(String, String, String)> {
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [s, sub, rg_key, rg, p, c, v, name]
            if s.eq_ignore_ascii_case("subscriptions")
                && rg_key.eq_ignore_ascii_case("resourcegroups")
                && p.eq_ignore_ascii_case("providers")
                && c.eq_ignore_ascii_case("microsoft.compute")
                && v.eq_ignore_ascii_case("virtualmachines") =>
        {
            Some((sub.to_string(), rg.to_string(), name.to_string()))
        }
        _ => None,
    }
}

impl Plane {
    /// Generates the CA, binds one TLS listener per bastion and records each bastion's
    /// `dnsName`. Needs a tokio runtime.
    pub async fn start(
        app: &Arc<App>,
        guest_port: Option<u16>,
        seed: u64,
        ws_reset: f64,
        cancel: CancellationToken,
    ) -> Result<Arc<Plane>, EmulatorError> {
        let dir = tempfile::Builder::new()
            .prefix("azssh-emulator-ca-")
            .tempdir()
            .map_err(|e| EmulatorError::InvalidConfig(format!("no temp dir for the CA: {e}")))?;
        let authority = Authority::generate(dir.path())
            .map_err(|e| EmulatorError::InvalidConfig(e.to_string()))?;
        let count = lock(&app.world).bastion.bastions.len();
        let mut listeners = Vec::with_capacity(count);
        for _ in 0..count {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
            let local = l.local_addr().map_err(|source| EmulatorError::Bind {
                addr: addr.to_string(),
                source,
            })?;
            listeners.push((l, local));
        }
        let nodes = {
            let mut world = lock(&app.world);
            for (b, (_, local)) in listeners.iter().enumerate() {
                world.bastion.bastions[b].dns_name = local.to_string();
            }
            world
                .bastion
                .bastions
                .iter()
                .map(|b| {
                    let g = b.guid.as_u128();
                    [
                        uuid::Uuid::from_u128(g ^ 0x1).to_string(),
                        uuid::Uuid::from_u128(g ^ 0x2).to_string(),
                    ]
                })
                .collect()
        };
        let plane = Arc::new(Plane {
            app: Arc::downgrade(app),
            authority,
            _dir: dir,
            sessions: Mutex::new(Sessions::default()),
            faults: Mutex::new(PlaneFaults {
                resets: Vec::new(),
                idle: None,
                ws_reset,
                rng: StdRng::seed_from_u64(seed ^ 0xba57_1011),
            }),
            opened: AtomicU64::new(0),
            guest_port,
            nodes,
            cancel,
        });
        for (b, (listener, _)) in listeners.into_iter().enumerate() {
            tokio::spawn(accept_loop(plane.clone(), b, listener));
        }
        Ok(plane)
    }

    /// The CA bundle clients trust (`AZSSH_CA_BUNDLE`).
    pub fn ca_bundle(&self) -> &std::path::Path {
        &self.authority.bundle
    }

    pub fn ca_pem(&self) -> &str {
        &self.authority.ca_pem
    }

    /// A TLS client configuration trusting the emulator's CA (tests).
    pub fn client_config(&self) -> Option<rustls::ClientConfig> {
        self.authority.client_config().ok()
    }

    pub fn faults(self: &Arc<Self>) -> BastionFaults {
        BastionFaults(self.clone())
    }

    async fn handle(
        self: Arc<Self>,
        bastion: usize,
        req: Request<Incoming>,
        reset: Arc<AtomicBool>,
    ) -> Response<Body> {
        let Some(app) = self.app.upgrade() else {
            return refuse(errors::not_found());
        };
        let path = req.uri().path().to_string();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let developer = lock(&app.world).bastion.bastions[bastion].sku == Sku::Developer;
        let method = req.method().clone();
        match (&method, segs.as_slice(), developer) {
            (&Method::POST, ["api", "tokens"], false) => {
                app.stats.count_request("bastion.token.post");
                let headers = req.headers().clone();
                let body = axum::body::to_bytes(Body::new(req.into_body()), 64 * 1024)
                    .await
                    .unwrap_or_default();
                match self.issue(&app, bastion, &headers, &body) {
                    Ok(v) => reply(StatusCode::OK, Some(v)),
                    Err(e) => refuse(e),
                }
            }
            (&Method::DELETE, ["api", "tokens", token], false) => {
                app.stats.count_request("bastion.token.delete");
                match self.delete(bastion, req.headers(), token) {
                    Ok(()) => reply(StatusCode::NO_CONTENT, None),
                    Err(e) => refuse(e),
                }
            }
            (&Method::GET, ["webtunnelv2", token], false) => {
                app.stats.count_request("bastion.websocket");
                let token = token.to_string();
                self.upgrade(app, bastion, req, &token, reset)
            }
            (&Method::POST, ["api", "connection"], true) => {
                app.stats.count_request("bastion.connection.post");
                let body = axum::body::to_bytes(Body::new(req.into_body()), 64 * 1024)
                    .await
                    .unwrap_or_default();
                refuse(self.developer_connection(&app, bastion, &body))
            }
            _ => {
                app.stats.count_request("bastion.unknown");
                refuse(errors::not_found())
            }
        }
    }

    /// `POST /api/tokens`.
    fn issue(
        &self,
        app: &App,
        bastion: usize,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Value, PlaneError> {
        // `tunnel.py` posts `data=content` with requests: a form, not JSON.
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !form_type {
            return Err(errors::bad_field(
                "Content-Type",
                "must be application/x-www-form-urlencoded",
            ));
        }
        let form = parse_query(&String::from_utf8_lossy(body));
        let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
        if field("aztoken").is_none_or(|t| t.trim() != app.token.expose()) {
            return Err(errors::unauthorized());
        }
        let world = lock(&app.world);
        let b = &world.bastion.bastions[bastion];
        if b.sku == Sku::Basic || !b.tunneling {
            return Err(errors::tunneling_disabled());
        }
        let node_header = headers.get("x-node-id").and_then(|v| v.to_str().ok());
        let node = match node_header {
            Some(n) => Some(
                self.nodes[bastion]
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(n.trim()))
                    .ok_or_else(|| errors::unknown_node(n))?,
            ),
            None => None,
        };
        if !field("protocol").is_some_and(|p| p.eq_ignore_ascii_case("tcptunnel")) {
            return Err(errors::bad_field("protocol", "must be `tcptunnel`"));
        }
        let port = field("workloadhostport")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| errors::bad_field("workloadHostPort", "must be a TCP port (1-65535)"))?;
        if field("hostname").is_some() {
            return Err(errors::ip_connect_disabled());
        }
        let resource_id =
            field("resourceid").ok_or_else(|| errors::bad_field("resourceId", "is required"))?;
        let mut sessions = lock(&self.sessions);
        if let Some(previous) = field("token")
            && !sessions.issued.contains(&(bastion, previous.to_string()))
        {
            return Err(errors::bad_field(
                "token",
                "is not a token this Bastion host issued",
            ));
        }
        let vm = parse_vm_id(resource_id)
            .filter(|(sub, _, _)| sub.eq_ignore_ascii_case(&world.subscription))
            .and_then(|(_, rg, name)| world.group(&rg).and_then(|g| world.vm(g, &name)))
            .ok_or_else(|| errors::target_not_found(resource_id))?;
        if !bastion::reaches(&world, bastion, vm) {
            return Err(errors::target_unreachable(resource_id));
        }
        drop(world);
        let node = node.unwrap_or_else(|| {
            sessions.next_node += 1;
            sessions.next_node % 2
        });
        let mut rng = rand::rng();
        let auth = random_token(&mut rng);
        let ws_token = random_token(&mut rng);
        sessions.issued.insert((bastion, auth.clone()));
        sessions.ws_to_auth.insert(ws_token.clone(), auth.clone());
        sessions.by_auth.insert(
            auth.clone(),
            Session {
                bastion,
                node,
                vm,
                port,
                ws_token: ws_token.clone(),
                ws_used: false,
                cancel: self.cancel.child_token(),
            },
        );
        Ok(json!({
            "authToken": auth,
            "username": "",
            "dataSource": "",
            "availableDataSources": [],
            "nodeId": self.nodes[bastion][node],
            "websocketToken": ws_token,
        }))
    }

    /// `DELETE /api/tokens/{authToken}`: ends the session and its tunnel.
    fn delete(&self, bastion: usize, headers: &HeaderMap, token: &str) -> Result<(), PlaneError> {
        let node = headers
            .get("x-node-id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| errors::bad_field("X-Node-Id", "is required"))?;
        let mut sessions = lock(&self.sessions);
        let Some(s) = sessions.by_auth.get(token) else {
            return Err(errors::session_not_found());
        };
        if s.bastion != bastion || !self.nodes[bastion][s.node].eq_ignore_ascii_case(node.trim()) {
            return Err(errors::session_not_found());
        }
        if let Some(s) = sessions.by_auth.remove(token) {
            sessions.ws_to_auth.remove(&s.ws_token);
            s.cancel.cancel();
        }
        Ok(())
    }

    /// `GET /webtunnelv2/{token}`: checks the upgrade and the single-use token, answers 101 and
    /// starts the tunnel.
    fn upgrade(
        self: &Arc<Self>,
        app: Arc<App>,
        bastion: usize,
        mut req: Request<Incoming>,
        token: &str,
        reset: Arc<AtomicBool>,
    ) -> Response<Body> {
        let h = req.headers();
        let has = |name: header::HeaderName, want: &str| {
            h.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
            })
        };
        let key = h
            .get(header::SEC_WEBSOCKET_KEY)
            .map(|k| k.as_bytes().to_vec());
        let (Some(key), true, true, true) = (
            key,
            has(header::UPGRADE, "websocket"),
            has(header::CONNECTION, "upgrade"),
            has(header::SEC_WEBSOCKET_VERSION, "13"),
        ) else {
            return refuse(errors::not_a_websocket_upgrade());
        };
        let query = parse_query(req.uri().query().unwrap_or(""));
        let node = query.get("x-node-id").cloned().unwrap_or_default();
        let (vm, port, cancel) = {
            let mut sessions = lock(&self.sessions);
            let Some(auth) = sessions.ws_to_auth.get(token).cloned() else {
                return refuse(errors::websocket_token_invalid());
            };
            let Some(s) = sessions.by_auth.get_mut(&auth) else {
                return refuse(errors::websocket_token_invalid());
            };
            if s.ws_used
                || s.bastion != bastion
                || !self.nodes[bastion][s.node].eq_ignore_ascii_case(node.trim())
            {
                return refuse(errors::websocket_token_invalid());
            }
            s.ws_used = true;
            (s.vm, s.port, s.cancel.clone())
        };
        let index = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
        let faults = {
            let mut f = lock(&self.faults);
            let mut reset_after = f
                .resets
                .iter()
                .position(|(i, _)| *i == index)
                .map(|p| f.resets.remove(p).1);
            if reset_after.is_none() && f.ws_reset > 0.0 {
                let p = f.ws_reset;
                if f.rng.random_bool(p) {
                    reset_after = Some(f.rng.random_range(1..64 * 1024));
                }
            }
            TunnelFaults {
                reset_after,
                idle: f.idle,
            }
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let plane = self.clone();
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!("bastion websocket upgrade failed: {e}");
                    return;
                }
            };
            let config = WebSocketConfig::default()
                .max_message_size(Some(tunnel::MAX_MESSAGE))
                .max_frame_size(Some(tunnel::MAX_MESSAGE));
            let ws = WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            plane
                .tunnel(app, ws, bastion, vm, port, faults, reset, cancel)
                .await;
        });
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
        let hs = resp.headers_mut();
        hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }

    /// Connects to the VM and relays.
    #[allow(clippy::too_many_arguments)]
    async fn tunnel<W>(
        &self,
        app: Arc<App>,
        mut ws: WebSocketStream<W>,
        bastion: usize,
        vm: usize,
        port: u16,
        faults: TunnelFaults,
        reset: Arc<AtomicBool>,
        cancel: CancellationToken,
    ) where
        W: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        // What the bastion sees of the VM, read under the lock once.
        let (running, private_ip, source, admits_rdp) = {
            let world = lock(&app.world);
            let v = &world.vms[vm];
            let src = world.bastion.bastions[bastion]
                .source(&world)
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            (
                v.power == crate::PowerState::Running,
                v.private_ip,
                src,
                world.admits(vm, src, 3389, tokio::time::Instant::now()),
            )
        };
        enum Target {
            Rdp(tokio::io::DuplexStream),
            Ssh(tokio::net::TcpStream),
        }
        let target = if !running {
            Err("the VM is not running")
        } else {
            match port {
                3389 if admits_rdp => {
                    let (ours, theirs) = tokio::io::duplex(64 * 1024);
                    tokio::spawn(async move {
                        let _ = crate::rdp_server::serve_rdp_connection(theirs).await;
                    });
                    Ok(Target::Rdp(ours))
                }
                3389 => Err("the network security group dropped the connection"),
                22 => self
                    .connect_ssh(private_ip, source)
                    .await
                    .map(Target::Ssh)
                    .map_err(|_| "the VM refused the connection"),
                _ => Err("nothing listens on that port"),
            }
        };
        let (ending, bytes) = match target {
            Ok(Target::Rdp(s)) => tunnel::relay(ws, s, faults, &reset, cancel).await,
            Ok(Target::Ssh(s)) => tunnel::relay(ws, s, faults, &reset, cancel).await,
            Err(why) => {
                tracing::debug!(why, "bastion tunnel could not reach the VM");
                // Bastion opens the WebSocket first and then fails to reach the VM: the client
                // sees the WebSocket close at once.
                tunnel::close(&mut ws, CloseCode::Error, "Failed to connect to the target").await;
                return;
            }
        };
        match ending {
            Ending::Reset => app.stats.count_fault("ws_reset"),
            Ending::IdleDrop => app.stats.count_fault("ws_idle_drop"),
            _ => {}
        }
        tracing::debug!(?ending, bytes, "bastion tunnel ended");
    }

    /// TCP to the guest's sshd at its private image, from the bastion's subnet image.
    async fn connect_ssh(
        &self,
        private_ip: Ipv4Addr,
        source: Ipv4Addr,
    ) -> std::io::Result<tokio::net::TcpStream> {
        let (Some(port), Some(dest), Some(src)) = (
            self.guest_port,
            private_image(private_ip),
            private_image(source),
        ) else {
            return Err(std::io::Error::other("no guest sshd is wired in"));
        };
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((src, 0)))?;
        socket.set_nodelay(true)?;
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            socket.connect(SocketAddr::from((dest, port))),
        )
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        Ok(stream)
    }

    /// `POST /api/connection` on a Developer bastion: the JSON body of `developer_sku_helper.py`.
    /// The emulated world's VMs all run Windows, which Developer cannot reach, so every request
    /// that gets past authentication and reachability is refused.
    fn developer_connection(&self, app: &App, bastion: usize, body: &[u8]) -> PlaneError {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
        if text("azToken").trim() != app.token.expose() || text("azToken").is_empty() {
            return errors::unauthorized();
        }
        let world = lock(&app.world);
        let resource_id = text("resourceId");
        let Some(vm) = parse_vm_id(resource_id)
            .filter(|(sub, _, _)| sub.eq_ignore_ascii_case(&world.subscription))
            .and_then(|(_, rg, name)| world.group(&rg).and_then(|g| world.vm(g, &name)))
        else {
            return errors::target_not_found(resource_id);
        };
        if !bastion::reaches(&world, bastion, vm) {
            return errors::target_unreachable(resource_id);
        }
        let port = match body.get("vmPort") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        if port != "22" {
            return errors::developer_port(&port);
        }
        errors::developer_windows()
    }
}

async fn accept_loop(plane: Arc<Plane>, bastion: usize, listener: TcpListener) {
    let acceptor = tokio_rustls::TlsAcceptor::from(plane.authority.server.clone());
    loop {
        let accepted = tokio::select! {
            _ = plane.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("bastion accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (stream, reset) = ResettableStream::new(stream);
        let plane = plane.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, "bastion tls handshake failed: {e}");
                    return;
                }
            };
            let cancel = plane.cancel.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let plane = plane.clone();
                let reset = reset.clone();
                async move { Ok::<_, Infallible>(plane.handle(bastion, req, reset).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = conn => if let Err(e) = r { tracing::trace!("bastion connection ended: {e}") },
            }
        });
    }
}
