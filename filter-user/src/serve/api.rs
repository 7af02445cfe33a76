//! The HTTP API, versioned under `/v1`, and `/metrics` (routes and their handlers).
//! Described in `openapi.json` (served at `/v1/openapi.json`).
//!
//! Every handler that touches the data plane runs on the blocking pool: the data
//! plane's calls take the run directory's lock and may wait for a CLI command.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, Query, Request, State, connect_info::Connected},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    serve::IncomingStream,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};

use super::{Daemon, auth::Token, input, metrics};
use crate::{
    control::{self, Change, Connection, ControlError},
    dataplane::{self, Diff, FlowFilter, Mode},
    rules::{self, RulesError},
};

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Who is on the other end of a request: a TCP peer (and the local address it
/// reached), or a process on the unix socket.
#[derive(Debug, Clone)]
pub enum Peer {
    /// Over TCP.
    Tcp {
        /// The client.
        peer: SocketAddr,
        /// The address it connected to.
        local: SocketAddr,
    },
    /// Over the unix socket.
    Unix {
        /// The client's user id, when the kernel says.
        uid: Option<u32>,
        /// The client's process id, when the kernel says.
        pid: Option<i32>,
    },
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        let peer = *stream.remote_addr();
        let local = stream.io().local_addr().unwrap_or(peer);
        Peer::Tcp { peer, local }
    }
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Peer {
        let cred = stream.io().peer_cred().ok();
        Peer::Unix { uid: cred.map(|c| c.uid()), pid: cred.and_then(|c| c.pid()) }
    }
}

impl Peer {
    /// For the change log.
    fn who(&self) -> String {
        match self {
            Peer::Tcp { peer, .. } => format!("tcp {peer}"),
            Peer::Unix { uid, pid } => format!(
                "unix uid {} pid {}",
                uid.map_or("?".into(), |u| u.to_string()),
                pid.map_or("?".into(), |p| p.to_string())
            ),
        }
    }

    /// The connection anti-lockout keeps open.
    fn connection(&self) -> Option<Connection> {
        match self {
            Peer::Tcp { peer, local } => Some(Connection::new(*peer, *local)),
            Peer::Unix { .. } => None,
        }
    }
}

/// What one listener's handlers share.
#[derive(Clone)]
pub struct Listener {
    /// The daemon.
    pub daemon: Arc<Daemon>,
    /// The token its clients must present, if any.
    pub token: Option<Token>,
}

/// The routes of one listener.
pub fn router(state: Listener) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/rules", get(rules_with_counters))
        .route("/v1/states", get(states).delete(flush_states))
        .route("/v1/ruleset", get(ruleset).put(put_ruleset))
        .route("/v1/ruleset/confirm", post(confirm))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(rules::MAX_RULESET_BYTES as usize + 4096))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Every route needs the bearer token when the listener has one.
async fn authenticate(State(st): State<Listener>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        let given = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if !token.accepts(given) {
            let who = req.extensions().get::<ConnectInfo<Peer>>().map_or("?".into(), |c| c.0.who());
            tracing::warn!(who, path = %req.uri().path(), "refused: missing or wrong bearer token");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"error": "a valid bearer token is required"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// An error as a response: its status and `{"error": message}` (a ruleset's:
/// `{file, line, column, message}`).
struct ApiError(StatusCode, serde_json::Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<dataplane::Error> for ApiError {
    fn from(e: dataplane::Error) -> ApiError {
        let code = match e {
            dataplane::Error::NotLoaded(_) | dataplane::Error::Stranded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            dataplane::Error::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, json!({"error": format!("{e:#}")}))
    }
}

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> ApiError {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"file": e.file, "line": e.line, "column": e.col, "message": e.message}),
        )
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::Rules(e) => e.into(),
            ControlError::Dataplane(e) => e.into(),
            ControlError::Lockout(m) | ControlError::Pending(m) => ApiError(StatusCode::CONFLICT, json!({"error": m})),
            ControlError::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, json!({"error": m})),
        }
    }
}

/// Runs blocking data plane work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e.to_string()}))))
}

async fn status(State(st): State<Listener>) -> Result<Json<dataplane::Status>, ApiError> {
    let paths = st.daemon.paths.clone();
    Ok(Json(blocking(move || Ok(dataplane::status(&paths)?)).await?))
}

async fn rules_with_counters(State(st): State<Listener>) -> Result<Json<Vec<dataplane::RuleStatus>>, ApiError> {
    let paths = st.daemon.paths.clone();
    Ok(Json(blocking(move || Ok(dataplane::status(&paths)?.rules)).await?))
}

/// `GET /v1/states`: the CLI's filters.
#[derive(Debug, Deserialize)]
struct StatesQuery {
    proto: Option<String>,
    host: Option<std::net::IpAddr>,
    port: Option<u16>,
}

async fn states(
    State(st): State<Listener>,
    Query(q): Query<StatesQuery>,
) -> Result<Json<Vec<dataplane::FlowEntry>>, ApiError> {
    let paths = st.daemon.paths.clone();
    let filter = FlowFilter { proto: q.proto, host: q.host, port: q.port };
    Ok(Json(blocking(move || Ok(dataplane::list_states(&paths, &filter)?)).await?))
}

async fn flush_states(
    State(st): State<Listener>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let paths = st.daemon.paths.clone();
    let n = blocking(move || Ok(dataplane::flush_states(&paths)?)).await?;
    tracing::info!(who = peer.who(), flows = n, "flushed the flow tables");
    Ok(Json(json!({"flushed": n})))
}

async fn ruleset(State(st): State<Listener>) -> Result<Json<serde_json::Value>, ApiError> {
    let paths = st.daemon.paths.clone();
    blocking(move || {
        let record = control::Record::current(&paths)?;
        let pending = control::pending(&paths)?;
        let Some(record) = record else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                json!({"error": "no record of the ruleset in force (nothing loaded, or loaded by an older xdpwall)"}),
            ));
        };
        Ok(Json(json!({
            "generation": record.generation,
            "source": record.source,
            "ruleset": record.ruleset,
            "pending_confirm": pending.map(|p| json!({"deadline": p.deadline, "who": p.who})),
        })))
    })
    .await
}

/// `PUT /v1/ruleset` options.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PutQuery {
    dry_run: bool,
    confirm: Option<u64>,
    force: bool,
    allow_empty: bool,
}

/// The answer to a `PUT /v1/ruleset`.
#[derive(Debug, Serialize)]
struct PutAnswer {
    applied: bool,
    diff: Diff,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm_deadline: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lockout: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

async fn put_ruleset(
    State(st): State<Listener>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PutAnswer>, ApiError> {
    let json_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    let daemon = st.daemon.clone();
    let who = peer.who();
    let metrics = st.daemon.metrics.clone();
    let dry_run = q.dry_run;
    let answer = blocking(move || {
        let table_dir = daemon.config.read().expect("not poisoned").table_dir.clone();
        let ruleset = input::parse(&body, json_form, &table_dir)?;
        if !q.allow_empty {
            rules::require_rules(&ruleset, input::API_SOURCE)?;
        }
        let protect = peer.connection();
        if q.dry_run {
            let (diff, lockout) = control::diff(&daemon.paths, &ruleset, input::API_SOURCE, protect.as_ref())?;
            return Ok(PutAnswer {
                applied: false,
                diff,
                generation: None,
                elapsed_ms: None,
                confirm_deadline: None,
                lockout,
                notes: vec![],
            });
        }
        let started = Instant::now();
        let change = Change {
            ruleset: &ruleset,
            source: Some(input::API_SOURCE.into()),
            add: &[],
            mode: Mode::Auto,
            confirm: q.confirm.map(std::time::Duration::from_secs),
            protect,
            force: q.force,
            who: who.clone(),
        };
        match control::apply(&daemon.paths, &change) {
            Ok(applied) => {
                daemon.metrics.applied("ok", Some(started.elapsed().as_secs_f64()));
                super::log_change(&who, "apply", applied.generation, &applied.report.diff);
                if let Some(deadline) = applied.confirm_deadline {
                    tracing::info!(who, deadline, "the change rolls back unless confirmed");
                }
                Ok(PutAnswer {
                    applied: true,
                    diff: applied.report.diff,
                    generation: Some(applied.generation),
                    elapsed_ms: Some(applied.report.elapsed.as_secs_f64() * 1e3),
                    confirm_deadline: applied.confirm_deadline,
                    lockout: None,
                    notes: applied.report.notes,
                })
            }
            Err(e) => {
                tracing::warn!(who, "apply refused: {e}");
                Err(e.into())
            }
        }
    })
    .await;
    if answer.is_err() && !dry_run {
        metrics.applied("error", None);
    }
    Ok(Json(answer?))
}

async fn confirm(
    State(st): State<Listener>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let paths = st.daemon.paths.clone();
    match blocking(move || Ok(control::confirm(&paths)?)).await? {
        Some(p) => {
            tracing::info!(who = peer.who(), change_by = p.who, "confirmed the pending change");
            Ok(Json(json!({"confirmed": true, "change_by": p.who})))
        }
        None => Err(ApiError(StatusCode::NOT_FOUND, json!({"error": "no change waits for confirmation"}))),
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// OpenMetrics for clients that accept it (Prometheus asks for it), else the classic
/// text format.
async fn metrics(State(st): State<Listener>, headers: HeaderMap) -> Result<Response, ApiError> {
    let daemon = st.daemon.clone();
    let text = blocking(move || Ok(metrics::render(&dataplane::status(&daemon.paths)?, &daemon.metrics))).await?;
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    Ok(if openmetrics {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics::to_classic(&text))
            .into_response()
    })
}
