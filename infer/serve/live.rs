//! `GET /v1/live?model=NAME[&style=…]`: a WebSocket that stylizes a camera's frames. The client
//! sends JPEG frames (binary messages); the server answers each frame it stylizes with a JPEG. One
//! frame is at work at a time per client and at most one waits: a newer frame replaces the
//! waiting one, so that a client sending faster than the device keeps a short delay.
//! Every frame gets one answer: the stylized JPEG, `{"dropped": 1}` (a newer frame replaced
//! it) or `{"error": …}` (the session goes on). A text message such as
//! `strength=0.5&preserve_color=true` changes the parameters for the frames after it; one that
//! names `model` also drops the previous `style` unless it names one (a style belongs to a model).
//!
//! A session that sends nothing for `--ws-idle-timeout` is closed, and so is one that does not
//! answer a ping within `--ws-ping-timeout` (a peer that vanished). A message over the upload
//! limit closes the session with code 1009, garbage that is not WebSocket frames with 1002.
//! After a reload the session's parameters are read again against the new models, at its next
//! frame: a removed model is an error for each frame until a text message names another.
use super::errors::ApiError;
use super::metrics::Timeout;
use super::models::Catalog;
use super::params::{self, StyleParams};
use super::stylize::{self, blocking};
use super::AppState;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use faststyle::imageio::OutputFormat;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Close code "normal closure" (RFC 6455), for a session that timed out.
const NORMAL: u16 = 1000;
/// Close code "going away", sent when the server stops.
const GOING_AWAY: u16 = 1001;
/// Close code "protocol error": what arrived is not WebSocket frames.
const PROTOCOL_ERROR: u16 = 1002;
/// Close code "message too big".
const TOO_BIG: u16 = 1009;
/// Largest text message (parameters); a longer one is an error message.
const MAX_TEXT_BYTES: usize = 4096;
/// The socket's read buffer: a frame larger than this is read in several pieces, and an idle
/// session holds no more.
const READ_BUFFER_BYTES: usize = 16 << 10;

/// How long a session may stay silent.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// No frame or text message for this long closes the session.
    pub idle: Duration,
    /// A ping goes out this often; one unanswered until the next closes the session.
    pub ping: Duration,
}

/// The upgrade: parameters are checked first, so that a bad model is a plain 404.
pub async fn live(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let catalog = state.models.current();
    let params = match params::parse(&pairs, &catalog, &["access_token"]) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            return ApiError::bad_request(format!("{e} (this route is a WebSocket)"))
                .into_response()
        }
    };
    if !valid_key(headers.get("sec-websocket-key").map(|v| v.as_bytes())) {
        return ApiError::bad_request(
            "`Sec-WebSocket-Key` is not 16 bytes in base64 (RFC 6455, 4.1)",
        )
        .into_response();
    }
    let limit = state.limits.upload_bytes;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            let choice = Choice {
                catalog,
                params: Ok(params),
            };
            session(socket, state, pairs, choice)
        })
}

/// Whether a `Sec-WebSocket-Key` is 16 bytes in base64: 22 characters of the alphabet and `==`.
fn valid_key(key: Option<&[u8]>) -> bool {
    let Some(key) = key else {
        return false;
    };
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// The session's parameters, as read against a catalog.
struct Choice {
    catalog: Arc<Catalog>,
    /// The parameters, or why they no longer hold (a model removed by a reload).
    params: Result<StyleParams, String>,
}

impl Choice {
    /// Reads the parameters again when the models changed since.
    fn refresh(&mut self, state: &AppState, pairs: &[(String, String)]) {
        let now = state.models.current();
        if !Arc::ptr_eq(&now, &self.catalog) {
            self.params = params::parse(pairs, &now, &["access_token"]).map_err(|e| e.message);
            self.catalog = now;
        }
    }
}

/// Serves one client until it closes, times out, or the server stops.
async fn session(
    mut socket: WebSocket,
    state: AppState,
    mut pairs: Vec<(String, String)>,
    mut choice: Choice,
) {
    let timeouts = state.live;
    let mut waiting: Option<Bytes> = None;
    let mut working: Option<JoinHandle<Result<Vec<u8>, ApiError>>> = None;
    let mut shutdown = state.shutdown.clone();
    // The last frame or text either way (idle), and whether the last ping is unanswered.
    let mut last_active = Instant::now();
    let mut pinged = false;
    let mut pings = tokio::time::interval_at(Instant::now() + timeouts.ping, timeouts.ping);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = |code: u16, reason: String| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        if working.is_none() {
            if let Some(frame) = waiting.take() {
                choice.refresh(&state, &pairs);
                match &choice.params {
                    Ok(params) => {
                        working = Some(tokio::spawn(frame_task(
                            state.clone(),
                            Arc::clone(&choice.catalog),
                            params.clone(),
                            frame,
                        )))
                    }
                    Err(message) => {
                        let reply = json!({ "error": message }).to_string();
                        if socket.send(Message::Text(reply.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        let busy = working.is_some() || waiting.is_some();
        tokio::select! {
            message = socket.recv() => {
                // Anything from the client shows that it is there.
                pinged = false;
                match message {
                    Some(Ok(Message::Binary(frame))) => {
                        last_active = Instant::now();
                        if waiting.replace(frame).is_some() {
                            state.metrics.frames_dropped.inc();
                            let note = json!({ "dropped": 1 }).to_string();
                            if socket.send(Message::Text(note.into())).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        last_active = Instant::now();
                        let outcome = if text.len() > MAX_TEXT_BYTES {
                            Err(ApiError::too_large(format!(
                                "a text message (parameters) is at most {MAX_TEXT_BYTES} bytes"
                            )))
                        } else {
                            update(&state, &mut pairs, text.as_str())
                        };
                        match outcome {
                            Ok(updated) => choice = updated,
                            Err(e) => {
                                let reply = json!({ "error": e.message }).to_string();
                                if socket.send(Message::Text(reply.into())).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        let (code, reason) = if is_too_big(&e) {
                            (TOO_BIG, format!("a message is at most {} bytes", state.limits.upload_bytes))
                        } else {
                            (PROTOCOL_ERROR, "not WebSocket frames".to_string())
                        };
                        let _ = socket.send(close(code, reason)).await;
                        break;
                    }
                    Some(Ok(_)) => {} // pings are answered by the library; pongs noted above
                }
            },
            done = async { working.as_mut().expect("guarded").await }, if working.is_some() => {
                working = None;
                last_active = Instant::now();
                let reply = match done {
                    Ok(Ok(jpeg)) => Message::Binary(jpeg.into()),
                    Ok(Err(e)) => Message::Text(json!({ "error": e.message }).to_string().into()),
                    Err(e) => Message::Text(json!({ "error": e.to_string() }).to_string().into()),
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(last_active + timeouts.idle), if !busy => {
                state.metrics.timeout(Timeout::WsIdle);
                let reason = format!("idle: no frame for {} s", timeouts.idle.as_secs());
                let _ = socket.send(close(NORMAL, reason)).await;
                break;
            }
            _ = pings.tick() => {
                if pinged {
                    state.metrics.timeout(Timeout::WsPing);
                    let reason = format!("no answer to a ping within {} s", timeouts.ping.as_secs());
                    let _ = socket.send(close(NORMAL, reason)).await;
                    break;
                }
                pinged = true;
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            _ = async { let _ = shutdown.wait_for(|stopping| *stopping).await; } => {
                let _ = socket.send(close(GOING_AWAY, "the server is stopping".into())).await;
                break;
            }
        }
    }
    if let Some(task) = working {
        task.abort();
    }
}

/// Whether a receive failed on the message size limit.
fn is_too_big(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Applies a text message's parameters on top of the session's, against the models of now.
fn update(
    state: &AppState,
    pairs: &mut Vec<(String, String)>,
    text: &str,
) -> Result<Choice, ApiError> {
    let mut updated = pairs.clone();
    let changes: Vec<(String, String)> = form_urlencoded::parse(text.trim().as_bytes())
        .into_owned()
        .collect();
    if changes.iter().any(|(k, _)| k == "model") {
        updated.retain(|(k, _)| k != "style");
    }
    for (key, value) in changes {
        updated.retain(|(k, _)| *k != key);
        updated.push((key, value));
    }
    let catalog = state.models.current();
    let params = params::parse(&updated, &catalog, &["access_token"])?;
    *pairs = updated;
    Ok(Choice {
        catalog,
        params: Ok(params),
    })
}

/// One frame: decode, network, encode as JPEG.
async fn frame_task(
    state: AppState,
    catalog: Arc<Catalog>,
    params: StyleParams,
    frame: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let _permit = stylize::admit(&state)?;
    let (limits, max_size) = (state.limits, params.max_size);
    let decoded = blocking(move || stylize::decode(&frame, max_size, limits)).await?;
    let jpeg = OutputFormat::Jpeg;
    let stylized = stylize::network(&state, &catalog, &params, &decoded.picture, jpeg).await?;
    blocking(move || stylize::encode(decoded.picture, stylized, &params, jpeg)).await
}
