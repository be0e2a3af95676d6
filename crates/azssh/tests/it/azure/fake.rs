//! A small scripted ARM server for tests: answers each `(method, path)` from a queue of canned
//! responses (the last one repeats) or from a closure, records every request, and hands out an
//! `ArmClient` pointed at it. It runs on its own thread and runtime, so tests may pause tokio's
//! clock without pausing the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use azssh::azure::{ArmClient, ArmConfig, Timeouts};

pub(crate) const TOKEN: &str = "eyJ0eXAiOiJKV1Qi.fake-arm-token.s3cr3t";
pub(crate) const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        url_query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn url_query_pairs(q: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A canned answer. `{base}` in the body or header values becomes the server's base URL.
#[derive(Debug, Clone)]
pub(crate) struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    pub(crate) fn json(status: u16, body: serde_json::Value) -> Self {
        Canned {
            status,
            headers: vec![],
            body: body.to_string(),
        }
    }
    pub(crate) fn empty(status: u16) -> Self {
        Canned {
            status,
            headers: vec![],
            body: String::new(),
        }
    }
    pub(crate) fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({"error": {"code": code, "message": message}}),
        )
    }
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Canned + Send + Sync>;

enum Route {
    Queue(Vec<Canned>),
    Func(Handler),
}

#[derive(Default)]
struct State {
    routes: HashMap<(String, String), Route>,
    requests: Vec<Recorded>,
}

pub(crate) struct ArmFake {
    pub base: String,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn key(method: &str, path: &str) -> (String, String) {
    (
        method.to_ascii_uppercase(),
        path.trim_end_matches('/').to_ascii_lowercase(),
    )
}

impl ArmFake {
    pub(crate) fn start() -> ArmFake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app_state = (state.clone(), base.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let (state, base) = app_state.clone();
                        async move { answer(&state, &base, method, uri, headers, body) }
                    },
                );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        ArmFake {
            base,
            state,
            shutdown: Some(tx),
        }
    }

    /// Answers `method path` with these responses in turn; the last one repeats.
    pub(crate) fn on(&self, method: &str, path: &str, responses: Vec<Canned>) -> &Self {
        self.lock()
            .routes
            .insert(key(method, path), Route::Queue(responses));
        self
    }

    /// Answers `method path` by calling `f` with the request.
    pub(crate) fn on_fn(
        &self,
        method: &str,
        path: &str,
        f: impl Fn(&Recorded) -> Canned + Send + Sync + 'static,
    ) -> &Self {
        self.lock()
            .routes
            .insert(key(method, path), Route::Func(Arc::new(f)));
        self
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// A client with a static token and no HTTP timers (see `Timeouts`), fit for paused clocks.
    pub(crate) fn client(&self) -> ArmClient {
        let mut config =
            ArmConfig::with_static_token(&self.base, SUBSCRIPTION, TOKEN).expect("config");
        config.timeouts = Timeouts {
            connect: None,
            request: None,
        };
        ArmClient::new(config).expect("client")
    }

    pub(crate) fn sub_path(&self, rest: &str) -> String {
        format!("/subscriptions/{SUBSCRIPTION}{rest}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ArmFake {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn answer(
    state: &Mutex<State>,
    base: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers,
        body,
    };
    enum Next {
        Canned(Canned),
        Func(Handler),
        Missing,
    }
    let next = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.requests.push(recorded.clone());
        match s.routes.get_mut(&key(&recorded.method, &recorded.path)) {
            Some(Route::Queue(q)) if q.len() > 1 => Next::Canned(q.remove(0)),
            Some(Route::Queue(q)) => q.first().cloned().map_or(Next::Missing, Next::Canned),
            Some(Route::Func(f)) => Next::Func(f.clone()),
            None => Next::Missing,
        }
    };
    // The closure runs outside the lock, so it may itself inspect the fake.
    let canned = match next {
        Next::Canned(c) => c,
        Next::Func(f) => f(&recorded),
        Next::Missing => Canned::error(
            404,
            "ResourceNotFound",
            &format!("no route for {} {}", recorded.method, recorded.path),
        ),
    };
    let mut resp =
        axum::response::Response::new(axum::body::Body::from(canned.body.replace("{base}", base)));
    *resp.status_mut() =
        StatusCode::from_u16(canned.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in &canned.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(&v.replace("{base}", base)),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    if !canned.body.is_empty() {
        resp.headers_mut().insert(
            "content-type",
            axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    resp
}
