//! `infer --serve ADDR --models DIR`: every style model under a folder, loaded once, behind a
//! web page and an HTTP API (see the README for the contract).
//!
//! Connections are bounded (`--max-connections`) and slow clients timed out (headers, bodies,
//! answers, WebSocket sessions). A body is read at a minimum rate within a budget of upload
//! bytes; the request then takes a place among those at work (`--queue` waiting plus a batch),
//! is decoded off the async threads with upload and pixel limits, stylized by the one model
//! worker thread, and encoded as `infer` writes files. SIGHUP or `POST /v1/reload` rescans the
//! models. Ctrl-C or SIGTERM stops accepting, lets the requests in flight finish, and exits 0.
mod api;
mod auth;
mod body;
mod conn;
mod errors;
mod listen;
mod live;
mod metrics;
mod models;
mod page;
mod params;
mod reload;
mod stylize;
mod worker;

use anyhow::{Context, Result};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use faststyle::device::{self, DeviceChoice, Precision};
use metrics::Metrics;
use reload::Models;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
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
    /// Connections open at once; `None`: what the file limit allows, at most 4096.
    pub max_connections: Option<u32>,
    /// Seconds for a request's line and headers (and for an idle keep-alive connection).
    pub header_timeout: f64,
    /// Seconds every body gets.
    pub body_timeout: f64,
    /// Bytes a second that earn a body more time.
    pub min_body_rate: u64,
    /// Seconds a write may wait for the client to read.
    pub send_timeout: f64,
    /// Seconds a live session may send nothing.
    pub ws_idle_timeout: f64,
    /// Seconds between pings of a live session; one unanswered until the next closes it.
    pub ws_ping_timeout: f64,
    /// Where the networks run.
    pub device: DeviceChoice,
    /// Their precision.
    pub precision: Precision,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    models: Arc<Models>,
    /// Whether `--token` is set (without it, reloads come from loopback only).
    token_set: bool,
    queue: Arc<Queue>,
    /// Requests at work (decoding, waiting, in the network, encoding).
    admission: Arc<Semaphore>,
    /// Bytes of uploads held at once (being read or at work).
    uploads: Arc<Semaphore>,
    limits: Limits,
    /// How fast bodies must come.
    pace: body::Pace,
    /// Live sessions' timeouts.
    live: live::Timeouts,
    metrics: Arc<Metrics>,
    /// Becomes true when the server starts stopping (live sessions then close).
    shutdown: watch::Receiver<bool>,
}

impl axum::extract::FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.metrics)
    }
}

/// Most connections by default, where the file limit allows them.
const DEFAULT_MAX_CONNECTIONS: u64 = 4096;

/// Runs the server until Ctrl-C or SIGTERM; `Err` when it cannot start.
pub fn run(options: Options) -> Result<u8> {
    let device = options.device.resolve()?;
    options.precision.check_device(device)?;
    let max_connections = connection_limit(options.max_connections);
    let metrics = Arc::new(Metrics::default());
    let loader = models::Loader::new(&options.models, device, options.precision)?;
    let models = Arc::new(Models::load(loader, Arc::clone(&metrics))?);
    let count = models.current().len();
    device::tune_for(device);
    // Waiting jobs plus a full batch at work: the queue itself never refuses an admitted
    // request.
    let admitted = options.queue.max(1) + worker::max_batch(device);
    let queue = Arc::new(Queue::new(admitted, Arc::clone(&metrics)));
    let worker = worker::spawn(device, Arc::clone(&queue), Arc::clone(&metrics))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let upload_bytes =
        usize::try_from(options.max_upload_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let state = AppState {
        models: Arc::clone(&models),
        token_set: options.token.is_some(),
        queue: Arc::clone(&queue),
        admission: Arc::new(Semaphore::new(admitted)),
        // As many uploads as places at work: what the server held before bodies were read
        // ahead of a place.
        uploads: Arc::new(Semaphore::new(
            admitted
                .saturating_mul(upload_bytes)
                .min(Semaphore::MAX_PERMITS),
        )),
        limits: Limits {
            upload_bytes,
            max_pixels: options.max_pixels,
        },
        pace: body::Pace {
            grace: seconds(options.body_timeout),
            min_rate: options.min_body_rate,
        },
        live: live::Timeouts {
            idle: seconds(options.ws_idle_timeout),
            ping: seconds(options.ws_ping_timeout),
        },
        metrics: Arc::clone(&metrics),
        shutdown: stop_rx,
    };
    let limits = listen::Limits {
        max_connections,
        header_timeout: seconds(options.header_timeout),
        send_timeout: seconds(options.send_timeout),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("serve")
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        reload::on_hangup(Arc::clone(&models))?;
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
        listen::serve(listener, app, limits, metrics, stop_signal(stop_tx)).await;
        anyhow::Ok(())
    });
    // Every connection is closed: the worker finishes what is queued, then stops.
    queue.close();
    let _ = worker.join();
    runtime.shutdown_background();
    served?;
    eprintln!("stopped");
    Ok(0)
}

/// `--max-connections`, or by default what the file limit allows up to 4096; a limit over
/// what the file limit allows is a warning (connections past it wait to be accepted).
fn connection_limit(asked: Option<u32>) -> u32 {
    let allowed = listen::connections_the_file_limit_allows();
    match (asked, allowed) {
        (Some(n), Some(allowed)) if u64::from(n) > allowed => {
            eprintln!(
                "warning: --max-connections {n} is over what the file limit allows ({allowed}; \
                 see `ulimit -n`): connections past it wait to be accepted"
            );
            n
        }
        (Some(n), _) => n,
        (None, allowed) => {
            let n = allowed.map_or(DEFAULT_MAX_CONNECTIONS, |a| a.min(DEFAULT_MAX_CONNECTIONS));
            u32::try_from(n).unwrap_or(u32::MAX)
        }
    }
}

/// A duration from seconds given on the command line (checked positive there).
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(1))
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
        .route("/v1/reload", post(reload::reload))
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
