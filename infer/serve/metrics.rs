//! What `/metrics` reports, in the Prometheus (OpenMetrics) text format: requests by route and
//! status, latency, queue depth, images stylized, live frames dropped, models and their
//! reloads and load errors, connections open and refused, timeouts by phase.
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type Histograms = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Where a client was too slow.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Timeout {
    /// The request line and headers (`--header-timeout`; idle keep-alive connections too).
    Header,
    /// The body (`--body-timeout`, `--min-body-rate`).
    Body,
    /// Reading the answer (`--send-timeout`).
    Send,
    /// A live session that sent nothing (`--ws-idle-timeout`).
    WsIdle,
    /// A live session that did not answer a ping (`--ws-ping-timeout`).
    WsPing,
}

/// Labels of the timeout counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabels {
    phase: &'static str,
}

/// The server's counters, shared by every request and the worker.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histograms,
    /// Jobs waiting for the worker.
    pub queue_depth: Gauge,
    images: Counter,
    batch_size: Histogram,
    /// Live frames replaced by a newer one before the worker took them.
    pub frames_dropped: Counter,
    /// Style model files that failed to load (at start and at each reload), and rescans of
    /// a folder that could not be read.
    pub load_errors: Counter,
    /// Rescans of `--models` swapped in.
    pub reloads: Counter,
    /// Models being served.
    pub models: Gauge,
    /// Connections open, WebSocket sessions included.
    pub connections_open: Gauge,
    /// Connections refused at `--max-connections`.
    pub connections_refused: Counter,
    timeouts: Family<TimeoutLabels, Counter>,
    /// Smoothed seconds per batch, in microseconds, for `Retry-After`.
    batch_micros: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("faststyle");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Histograms =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.002, 2.0, 14)));
        let queue_depth = Gauge::default();
        let images = Counter::default();
        let batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0]);
        let frames_dropped = Counter::default();
        let load_errors = Counter::default();
        let reloads = Counter::default();
        let models = Gauge::default();
        let connections_open = Gauge::default();
        let connections_refused = Counter::default();
        let timeouts = Family::<TimeoutLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by route",
            latency.clone(),
        );
        registry.register(
            "queue_depth",
            "Pictures waiting for the model worker",
            queue_depth.clone(),
        );
        registry.register(
            "images_stylized",
            "Pictures through the network",
            images.clone(),
        );
        registry.register(
            "batch_size",
            "Pictures per pass through the network",
            batch_size.clone(),
        );
        registry.register(
            "live_frames_dropped",
            "Live frames dropped because a newer one arrived first",
            frames_dropped.clone(),
        );
        registry.register(
            "model_load_errors",
            "Style model files that failed to load, at start or at a reload",
            load_errors.clone(),
        );
        registry.register(
            "model_reloads",
            "Rescans of --models (SIGHUP or POST /v1/reload)",
            reloads.clone(),
        );
        registry.register("models", "Style models being served", models.clone());
        registry.register(
            "connections_open",
            "Connections open, WebSocket sessions included",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused at --max-connections",
            connections_refused.clone(),
        );
        registry.register(
            "timeouts",
            "Clients too slow, by phase: header, body, send, ws_idle, ws_ping",
            timeouts.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            queue_depth,
            images,
            batch_size,
            frames_dropped,
            load_errors,
            reloads,
            models,
            connections_open,
            connections_refused,
            timeouts,
            batch_micros: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a client that was too slow.
    pub fn timeout(&self, phase: Timeout) {
        let phase = match phase {
            Timeout::Header => "header",
            Timeout::Body => "body",
            Timeout::Send => "send",
            Timeout::WsIdle => "ws_idle",
            Timeout::WsPing => "ws_ping",
        };
        self.timeouts.get_or_create(&TimeoutLabels { phase }).inc();
    }

    /// Records one pass of the worker.
    pub fn observe_batch(&self, pictures: usize, took: Duration) {
        self.images.inc_by(pictures as u64);
        self.batch_size.observe(pictures as f64);
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.batch_micros.load(Ordering::Relaxed);
        let smoothed = if old == 0 {
            micros
        } else {
            (old * 7 + micros) / 8
        };
        self.batch_micros.store(smoothed, Ordering::Relaxed);
    }

    /// Seconds a client refused for a full queue should wait: the time the worker needs for
    /// the waiting jobs, at least 1.
    pub fn retry_after(&self, waiting: usize) -> u64 {
        let micros = self.batch_micros.load(Ordering::Relaxed) as f64;
        let secs = micros * (waiting as f64 + 1.0) / 1e6;
        (secs.ceil() as u64).clamp(1, 60)
    }

    /// The text `/metrics` answers.
    fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// Middleware that counts every answered request by route (the route pattern, so that
/// unknown paths do not each make a series) and status, and times it.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
