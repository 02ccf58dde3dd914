//! Reading an upload. A body must keep up a minimum rate: it has `--body-timeout` seconds, plus
//! one second for every `--min-body-rate` bytes that arrived, so a slow link goes through and
//! a trickle is cut (408). What arrived is counted against the server's budget of upload bytes
//! held at once (503 past it): a crowd of slow uploads holds only the bytes it sent, and never
//! a place in the queue, which is taken once the body is in.
use super::errors::ApiError;
use super::metrics::{Metrics, Timeout};
use axum::body::{Body, Bytes};
use http_body_util::{BodyExt, LengthLimitError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How fast bodies must come.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Time every body gets, whatever its size.
    pub grace: Duration,
    /// Bytes a second that earn more time.
    pub min_rate: u64,
}

/// A whole body, and its share of the upload budget (given back when dropped).
pub struct Upload {
    /// The body.
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// Reads a body at `pace`, within `limit` bytes, holding its bytes in `budget`.
pub async fn read(
    mut body: Body,
    pace: Pace,
    limit: usize,
    budget: &Arc<Semaphore>,
    metrics: &Metrics,
) -> Result<Upload, ApiError> {
    let start = Instant::now();
    let mut data = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    loop {
        let earned = Duration::from_secs_f64(data.len() as f64 / pace.min_rate.max(1) as f64);
        let frame = match tokio::time::timeout_at(start + pace.grace + earned, body.frame()).await {
            Err(_) => {
                metrics.timeout(Timeout::Body);
                return Err(ApiError::timeout(format!(
                    "the body came too slowly: {} bytes in {:.0} s (a body has {} s, plus 1 s \
                     for every {} bytes)",
                    data.len(),
                    start.elapsed().as_secs_f64(),
                    pace.grace.as_secs(),
                    pace.min_rate
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) if is_over_limit(&e) => {
                return Err(ApiError::too_large(format!(
                    "the body is over the upload limit of {limit} bytes"
                )))
            }
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(format!("cannot read the body: {e}")))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let share = u32::try_from(chunk.len())
            .ok()
            .and_then(|n| Arc::clone(budget).try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                ApiError::busy("the server holds as many uploads as it can; retry later", 1)
            })?;
        match held.as_mut() {
            Some(permit) => permit.merge(share),
            None => held = Some(share),
        }
        data.extend_from_slice(&chunk);
    }
    Ok(Upload {
        bytes: Bytes::from(data),
        _held: held,
    })
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
