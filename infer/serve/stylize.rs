//! One picture through the server, the same steps as `infer` takes for a file: decode (with
//! the pixel limit), scale, the worker's network pass, colour options, encode.
use super::errors::ApiError;
use super::models::Catalog;
use super::params::StyleParams;
use super::worker::{Job, Refused};
use super::AppState;
use crate::adjust::{self, Finish, Prepared};
use faststyle::imageio::{self, Colour, OutputFormat, TooLarge};
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
    /// The upright photo, scaled to `max_size`, with its sRGB copy for the network.
    pub picture: Prepared,
    /// The format its answer has by default: the input's, when it can be written (JPEG for
    /// HEIF and AVIF).
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
    let allowed = match max_size {
        None => limits.max_pixels,
        Some(_) => limits.max_pixels.saturating_mul(SHRINK_FACTOR),
    };
    if let Ok((w, h)) = imageio::dimensions(bytes, None) {
        let pixels = u64::from(w) * u64::from(h);
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
    let photo =
        crate::guard::catch(|| imageio::decode_photo(bytes, None, Some(allowed))).map_err(|e| {
            match e.downcast_ref::<TooLarge>() {
                Some(too_large) => ApiError::too_large(too_large.to_string()),
                None => ApiError::bad_request(format!("cannot decode the image: {e:#}")),
            }
        })?;
    let format = photo.default_format;
    let picture = adjust::prepare(photo, max_size)
        .map_err(|e| ApiError::bad_request(format!("cannot scale the image: {e:#}")))?;
    let (w, h) = picture.photo.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(ApiError::too_large(format!(
            "image is {w}×{h} = {pixels} pixels after max_size, over the limit of {}",
            limits.max_pixels
        )));
    }
    Ok(Decoded { picture, format })
}

/// Runs the picture through the worker and waits for the network's result (`params` were
/// read against `catalog`), at the depth its answer in `format` holds.
pub async fn network(
    state: &AppState,
    catalog: &Catalog,
    params: &StyleParams,
    picture: &Prepared,
    format: OutputFormat,
) -> Result<Colour, ApiError> {
    let (reply, result) = oneshot::channel();
    let job = Job {
        network: catalog.network(params.model),
        style: params.style.clone(),
        choice: params.choice.clone(),
        rgb: picture.network_input().clone(),
        depth: adjust::network_depth(&picture.photo, format),
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

/// Applies the colour options and encodes, as `infer` writes a file, with the metadata
/// stripped unless `keep_metadata`. Blocking.
pub fn encode(
    original: Prepared,
    stylized: Colour,
    params: &StyleParams,
    format: OutputFormat,
) -> Result<Vec<u8>, ApiError> {
    let finish = Finish {
        preserve_color: params.preserve_color,
        strength: params.strength,
        strip_metadata: !params.keep_metadata,
    };
    let photo = adjust::finish_photo(original, stylized, format, finish)
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    imageio::encode_photo(&photo, format, params.quality)
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
