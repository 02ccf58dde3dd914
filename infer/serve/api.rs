//! The HTTP API's handlers: health, the model list and previews, and stylizing one image.
use super::errors::ApiError;
use super::models::ModelInfo;
use super::stylize::{self, blocking};
use super::{body, params, AppState};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use faststyle::conditional::StyleMix;
use faststyle::imageio::OutputFormat;
use http_body_util::BodyExt;
use std::time::Duration;

/// How long a refused body is read and discarded at most.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /v1/models`: every loaded model, in name order.
pub async fn models(State(state): State<AppState>) -> Json<Vec<ModelInfo>> {
    Json(
        state
            .models
            .current()
            .infos()
            .into_iter()
            .cloned()
            .collect(),
    )
}

/// `GET /v1/preview?model=NAME[&style=NAME|INDEX]`: a small photo through one of the model's
/// styles, as JPEG (made when the model loaded; `style=` as for `/v1/stylize`).
pub async fn preview(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let catalog = state.models.current();
    let params = params::parse(&pairs, &catalog, &[])?;
    let StyleMix::One(style) = params.style else {
        return Err(ApiError::bad_request(
            "parameter `style`: a preview shows one style (NAME or INDEX), not a blend",
        ));
    };
    let jpeg = catalog.preview(params.model, style).to_vec();
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
    // The catalog of the moment: the request finishes on these models whatever a reload does.
    let catalog = state.models.current();
    let params = match params::parse(&pairs, &catalog, &[]) {
        Ok(params) => params,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    // A full server says so before the upload rather than after it (a probe: the place is
    // given back at once).
    if let Err(busy) = stylize::admit(&state) {
        drain(body).await;
        return Err(busy);
    }
    let upload = body::read(
        body,
        state.pace,
        state.limits.upload_bytes,
        &state.uploads,
        &state.metrics,
    )
    .await?;
    // A place among the requests at work, taken once the body is in: a slow upload never
    // holds one.
    let _permit = stylize::admit(&state)?;
    let bytes = upload.bytes.clone();
    let (limits, max_size) = (state.limits, params.max_size);
    let decoded = blocking(move || stylize::decode(&bytes, max_size, limits)).await?;
    let format = params
        .format
        .or(decoded.format)
        .unwrap_or(OutputFormat::Png);
    let stylized = stylize::network(&state, &catalog, &params, &decoded.picture, format).await?;
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
