//! The HTTP API's handlers: health, the model list and previews, and stylizing one image.
use super::errors::ApiError;
use super::models::ModelInfo;
use super::stylize::{self, blocking};
use super::{params, AppState};
use axum::body::{to_bytes, Body};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use faststyle::imageio::OutputFormat;
use http_body_util::{BodyExt, LengthLimitError};
use std::time::Duration;

/// How long a client may take to send its body once the server has room for it.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a refused body is read and discarded at most.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /v1/models`: every loaded model, in name order.
pub async fn models(State(state): State<AppState>) -> Json<Vec<ModelInfo>> {
    Json(state.catalog.infos().into_iter().cloned().collect())
}

/// `GET /v1/preview?model=NAME`: a small photo through the model, as JPEG.
pub async fn preview(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = params::parse(&pairs, &state.catalog, &[])?;
    let jpeg = state.catalog.preview(params.model).to_vec();
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        jpeg,
    )
        .into_response())
}

/// `POST /v1/stylize?model=NAME&…` with the image as the body: the image `infer` would write.
pub async fn stylize(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Body,
) -> Result<Response, ApiError> {
    // Room is taken before the body is read: a crowd of uploads waits outside, not in memory.
    let admitted =
        params::parse(&pairs, &state.catalog, &[]).and_then(|p| Ok((p, stylize::admit(&state)?)));
    let (params, _permit) = match admitted {
        Ok(admitted) => admitted,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, usize::MAX)).await {
        Err(_) => return Err(ApiError::timeout("the body did not arrive in time")),
        Ok(Err(e)) if is_over_limit(&e) => {
            return Err(ApiError::too_large(format!(
                "the body is over the upload limit of {} bytes",
                state.limits.upload_bytes
            )))
        }
        Ok(Err(e)) => return Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
        Ok(Ok(bytes)) => bytes,
    };
    let (limits, max_size) = (state.limits, params.max_size);
    let decoded = blocking(move || stylize::decode(&bytes, max_size, limits)).await?;
    let stylized = stylize::network(&state, &params, &decoded.picture).await?;
    let format = params
        .format
        .or(decoded.format)
        .unwrap_or(OutputFormat::Png);
    let encoded =
        blocking(move || stylize::encode(decoded.picture, stylized, &params, format)).await?;
    Ok(([(header::CONTENT_TYPE, stylize::mime(format))], encoded).into_response())
}

/// Reads and discards a body that will not be used, so that the client, still sending it,
/// gets the answer rather than a reset connection. Bounded by the upload limit and a timeout;
/// nothing is kept.
async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// Whether reading a body failed on tower-http's size limit.
fn is_over_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
