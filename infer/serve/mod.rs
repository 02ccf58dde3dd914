//! `infer --serve ADDR --models DIR`: every style model under a folder, loaded once, behind a
//! web page and an HTTP API (see the README for the contract).
//!
//! Requests are admitted up to a bound (`--queue` waiting plus those at work) before their
//! body is read, decoded off the async threads with upload and pixel limits, stylized by one
//! model worker thread that owns the networks, and encoded as `infer` writes files. Ctrl-C or
//! SIGTERM stops accepting, lets the requests in flight finish, and exits 0.
mod api;
mod auth;
mod errors;
mod live;
mod metrics;
mod models;
mod page;
mod params;
mod stylize;
mod worker;

use anyhow::{bail, Context, Result};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use faststyle::device::{self, DeviceChoice, Precision};
use metrics::Metrics;
use models::Catalog;
use std::path::PathBuf;
use std::sync::Arc;
use stylize::Limits;
use tokio::sync::{watch, Semaphore};
use tower_http::limit::RequestBodyLimitLayer;
use worker::Queue;

/// Exit status after a second Ctrl-C, which stops without waiting.
const EXIT_FORCED: i32 = 130;

/// What `--serve` was started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on, `HOST:PORT`.
    pub addr: String,
    /// Folder searched (recursively) for style models.
    pub models: PathBuf,
    /// The bearer token every API call must carry, if any.
    pub token: Option<String>,
    /// Largest upload, in MiB.
    pub max_upload_mb: u64,
    /// Largest picture the network gets, in pixels.
    pub max_pixels: u64,
    /// How many requests may wait for the worker.
    pub queue: usize,
    /// Where the networks run.
    pub device: DeviceChoice,
    /// Their precision.
    pub precision: Precision,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    catalog: Arc<Catalog>,
    queue: Arc<Queue>,
    /// Requests at work (body read, decoding, waiting, in the network, encoding).
    admission: Arc<Semaphore>,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Becomes true when the server starts stopping (live sessions then close).
    shutdown: watch::Receiver<bool>,
}

impl axum::extract::FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.metrics)
    }
}

/// Runs the server until Ctrl-C or SIGTERM; `Err` when it cannot start.
pub fn run(options: Options) -> Result<u8> {
    let device = options.device.resolve()?;
    options.precision.check_device(device)?;
    let loaded = models::load_all(&options.models, device, options.precision)?;
    if loaded.networks.is_empty() {
        bail!(
            "--models {}: no style model could be loaded (looked for *.safetensors)",
            options.models.display()
        );
    }
    device::tune_for(device);
    let metrics = Arc::new(Metrics::default());
    metrics.load_errors.inc_by(loaded.failures as u64);
    let count = loaded.networks.len();
    // Waiting jobs plus a full batch at work: the queue itself never refuses an admitted
    // request.
    let admitted = options.queue.max(1) + worker::max_batch(device);
    let queue = Arc::new(Queue::new(admitted, Arc::clone(&metrics)));
    let worker = worker::spawn(loaded.networks, Arc::clone(&queue), Arc::clone(&metrics))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState {
        catalog: Arc::new(loaded.catalog),
        queue: Arc::clone(&queue),
        admission: Arc::new(Semaphore::new(admitted)),
        limits: Limits {
            upload_bytes: usize::try_from(options.max_upload_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            max_pixels: options.max_pixels,
        },
        metrics,
        shutdown: stop_rx,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("serve")
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&options.addr)
            .await
            .with_context(|| format!("cannot listen on {}", options.addr))?;
        let local = listener.local_addr().context("no local address")?;
        println!(
            "serving {count} style model{} at http://{local}/ on {} (Ctrl-C to stop)",
            if count == 1 { "" } else { "s" },
            device::describe(device)
        );
        let app = router(state, options.token.clone());
        axum::serve(listener, app)
            .with_graceful_shutdown(stop_signal(stop_tx))
            .await
            .context("the server failed")
    });
    // Every connection is closed: the worker finishes what is queued, then stops.
    queue.close();
    let _ = worker.join();
    runtime.shutdown_background();
    served?;
    eprintln!("stopped");
    Ok(0)
}

/// The routes, the token check on the API's, JSON errors and metrics on all.
fn router(state: AppState, token: Option<String>) -> Router {
    let upload_limit = state.limits.upload_bytes;
    let guarded = Router::new()
        .route("/v1/models", get(api::models))
        .route("/v1/preview", get(api::preview))
        .route(
            "/v1/stylize",
            post(api::stylize).layer(RequestBodyLimitLayer::new(upload_limit)),
        )
        .route("/v1/live", get(live::live))
        .route("/metrics", get(metrics::serve))
        .route_layer(from_fn_with_state(Arc::new(token), auth::require));
    let open = Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/healthz", get(api::healthz));
    let metrics = Arc::clone(&state.metrics);
    open.merge(guarded)
        .fallback(errors::no_route)
        .layer(from_fn(errors::as_json))
        .layer(from_fn_with_state(metrics, metrics::track))
        .with_state(state)
}

/// Resolves on Ctrl-C or SIGTERM, after telling live sessions to close. A second signal
/// exits at once.
async fn stop_signal(stop: watch::Sender<bool>) {
    wait_for_signal().await;
    eprintln!("stopping: no new requests; finishing those in progress (Ctrl-C again to quit now)");
    let _ = stop.send(true);
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("stopped without finishing");
        std::process::exit(EXIT_FORCED);
    });
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
