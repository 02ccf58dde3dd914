//! `GET /v1/live?model=NAME`: a WebSocket that stylizes a camera's frames. The client sends
//! JPEG frames (binary messages); the server answers each frame it stylizes with a JPEG. One
//! frame is at work at a time per client and at most one waits: a newer frame replaces the
//! waiting one, so that a client sending faster than the device keeps a short delay.
//! Every frame gets one answer: the stylized JPEG, `{"dropped": 1}` (a newer frame replaced
//! it) or `{"error": …}` (the session goes on). A text message such as
//! `strength=0.5&preserve_color=true` changes the parameters for the frames after it.
use super::errors::ApiError;
use super::params::{self, StyleParams};
use super::stylize::{self, blocking};
use super::AppState;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use faststyle::imageio::OutputFormat;
use serde_json::json;
use tokio::task::JoinHandle;

/// Close code "going away" (RFC 6455), sent when the server stops.
const GOING_AWAY: u16 = 1001;

/// The upgrade: parameters are checked first, so that a bad model is a plain 404.
pub async fn live(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let params = match params::parse(&pairs, &state.catalog, &["access_token"]) {
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
    upgrade
        .max_message_size(state.limits.upload_bytes)
        .on_upgrade(move |socket| session(socket, state, pairs, params))
}

/// Serves one client until it closes or the server stops.
async fn session(
    mut socket: WebSocket,
    state: AppState,
    mut pairs: Vec<(String, String)>,
    mut params: StyleParams,
) {
    let mut waiting: Option<Bytes> = None;
    let mut working: Option<JoinHandle<Result<Vec<u8>, ApiError>>> = None;
    let mut shutdown = state.shutdown.clone();
    loop {
        if working.is_none() {
            if let Some(frame) = waiting.take() {
                working = Some(tokio::spawn(frame_task(
                    state.clone(),
                    params.clone(),
                    frame,
                )));
            }
        }
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(frame))) => {
                    if waiting.replace(frame).is_some() {
                        state.metrics.frames_dropped.inc();
                        let note = json!({ "dropped": 1 }).to_string();
                        if socket.send(Message::Text(note.into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    match update(&state, &mut pairs, text.as_str()) {
                        Ok(p) => params = p,
                        Err(e) => {
                            let reply = json!({ "error": e.message }).to_string();
                            if socket.send(Message::Text(reply.into())).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // pings are answered by the library
            },
            done = async { working.as_mut().expect("guarded").await }, if working.is_some() => {
                working = None;
                let reply = match done {
                    Ok(Ok(jpeg)) => Message::Binary(jpeg.into()),
                    Ok(Err(e)) => Message::Text(json!({ "error": e.message }).to_string().into()),
                    Err(e) => Message::Text(json!({ "error": e.to_string() }).to_string().into()),
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
            _ = async { let _ = shutdown.wait_for(|stopping| *stopping).await; } => {
                let close = CloseFrame { code: GOING_AWAY, reason: "the server is stopping".into() };
                let _ = socket.send(Message::Close(Some(close))).await;
                break;
            }
        }
    }
    if let Some(task) = working {
        task.abort();
    }
}

/// Applies a text message's parameters on top of the session's.
fn update(
    state: &AppState,
    pairs: &mut Vec<(String, String)>,
    text: &str,
) -> Result<StyleParams, ApiError> {
    let mut updated = pairs.clone();
    for (key, value) in form_urlencoded::parse(text.trim().as_bytes()).into_owned() {
        updated.retain(|(k, _)| *k != key);
        updated.push((key, value));
    }
    let params = params::parse(&updated, &state.catalog, &["access_token"])?;
    *pairs = updated;
    Ok(params)
}

/// One frame: decode, network, encode as JPEG.
async fn frame_task(
    state: AppState,
    params: StyleParams,
    frame: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let _permit = stylize::admit(&state)?;
    let (limits, max_size) = (state.limits, params.max_size);
    let decoded = blocking(move || stylize::decode(&frame, max_size, limits)).await?;
    let stylized = stylize::network(&state, &params, &decoded.picture).await?;
    blocking(move || stylize::encode(decoded.picture, stylized, &params, OutputFormat::Jpeg)).await
}
