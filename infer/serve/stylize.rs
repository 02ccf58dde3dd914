//! One picture through the server, the same steps as `infer` takes for a file: decode (with
//! the pixel limit), scale, the worker's network pass, colour options, encode.
use super::errors::ApiError;
use super::models::Catalog;
use super::params::StyleParams;
use super::worker::{Job, Refused};
use super::AppState;
use crate::adjust;
use faststyle::imageio::{self, OutputFormat, Picture};
use image::{ImageFormat, ImageReader};
use std::io::Cursor;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// With `max_size`, inputs up to this many times `--max-pixels` are decoded and scaled down.
const SHRINK_FACTOR: u64 = 4;

/// The limits on what a request may make the server hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body, bytes.
    pub upload_bytes: usize,
    /// Largest picture the network gets, pixels.
    pub max_pixels: u64,
}

/// A decoded input, ready for the network.
pub struct Decoded {
    /// The upright picture, scaled to `max_size`.
    pub picture: Picture,
    /// The input's format, when it can be written.
    pub format: Option<OutputFormat>,
}

/// A place in the server's bound of requests at work: held from before the body is read until
/// the answer is made, so that memory stays bounded however many clients connect.
pub fn admit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state.admission.clone().try_acquire_owned().map_err(|_| {
        let waiting = state.queue.depth();
        ApiError::busy(
            "the server is busy (its queue is full); retry later",
            state.metrics.retry_after(waiting),
        )
    })
}

/// Decodes a body, refusing pictures over the pixel limit before their pixels are decoded
/// (the header gives the size). Blocking: run it off the async threads.
pub fn decode(bytes: &[u8], max_size: Option<u32>, limits: Limits) -> Result<Decoded, ApiError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format();
    let format = reader.as_ref().ok().and_then(|r| r.format());
    if let Some((w, h)) = reader.ok().and_then(|r| r.into_dimensions().ok()) {
        let pixels = u64::from(w) * u64::from(h);
        let allowed = match max_size {
            None => limits.max_pixels,
            Some(_) => limits.max_pixels.saturating_mul(SHRINK_FACTOR),
        };
        if pixels > allowed {
            let hint = if max_size.is_none() {
                "; add max_size=N to have it scaled down"
            } else {
                ""
            };
            return Err(ApiError::too_large(format!(
                "image is {w}×{h} = {pixels} pixels, over the limit of {allowed}{hint}"
            )));
        }
    }
    // A decoder that panics on a crafted file is that file's error, like any other.
    let picture = crate::guard::catch(|| imageio::decode(bytes, None))
        .map_err(|e| ApiError::bad_request(format!("cannot decode the image: {e:#}")))?;
    let picture = adjust::prepare(picture, max_size)
        .map_err(|e| ApiError::bad_request(format!("cannot scale the image: {e:#}")))?;
    let (w, h) = picture.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(ApiError::too_large(format!(
            "image is {w}×{h} = {pixels} pixels after max_size, over the limit of {}",
            limits.max_pixels
        )));
    }
    Ok(Decoded {
        picture,
        format: format.and_then(writable),
    })
}

/// The output format of a decoded input format, if it can be written.
fn writable(format: ImageFormat) -> Option<OutputFormat> {
    format
        .extensions_str()
        .first()
        .and_then(|ext| OutputFormat::from_extension(ext))
}

/// Runs the picture through the worker and waits for the network's result (`params` were
/// read against `catalog`).
pub async fn network(
    state: &AppState,
    catalog: &Catalog,
    params: &StyleParams,
    picture: &Picture,
) -> Result<image::RgbImage, ApiError> {
    let (reply, result) = oneshot::channel();
    let job = Job {
        network: catalog.network(params.model),
        style: params.style.clone(),
        choice: params.choice.clone(),
        rgb: picture.rgb.clone(),
        reply,
    };
    match state.queue.push(job) {
        Ok(()) => {}
        Err(Refused::Full) => {
            let waiting = state.queue.depth();
            return Err(ApiError::busy(
                "the server is busy (its queue is full); retry later",
                state.metrics.retry_after(waiting),
            ));
        }
        Err(Refused::Closed) => return Err(ApiError::busy("the server is shutting down", 5)),
    }
    match result.await {
        Ok(Ok(rgb)) => Ok(rgb),
        Ok(Err(e)) => Err(ApiError::internal(format!("the network failed: {e:#}"))),
        Err(_) => Err(ApiError::busy("the server is shutting down", 5)),
    }
}

/// Applies the colour options and encodes, as `infer` writes a file. Blocking.
pub fn encode(
    original: Picture,
    stylized: image::RgbImage,
    params: &StyleParams,
    format: OutputFormat,
) -> Result<Vec<u8>, ApiError> {
    let picture = adjust::finish(original, stylized, params.preserve_color, params.strength)
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    imageio::encode(&picture, format, params.quality)
        .map_err(|e| ApiError::internal(format!("cannot encode the result: {e:#}")))
}

/// The media type of an output format.
pub fn mime(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Png => "image/png",
        OutputFormat::Jpeg => "image/jpeg",
        OutputFormat::WebP => "image/webp",
        OutputFormat::Bmp => "image/bmp",
        OutputFormat::Tiff => "image/tiff",
        OutputFormat::Gif => "image/gif",
        OutputFormat::Tga => "image/x-tga",
        OutputFormat::Qoi => "image/qoi",
        OutputFormat::Ppm => "image/x-portable-pixmap",
    }
}

/// Runs blocking work on tokio's blocking threads; a panic there is an internal error.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        crate::guard::catch(|| Ok(work()))
            .unwrap_or_else(|e| Err(ApiError::internal(format!("{e:#}"))))
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(format!("{e}"))))
}
