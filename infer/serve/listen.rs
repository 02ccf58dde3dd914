//! The accept loop: at most `--max-connections` connections (one more is answered 503 and
//! closed at once), HTTP/1 with a header read timeout and a bound on the request head, and a
//! graceful stop that waits for every connection, WebSocket sessions included, to end.
use super::conn::Connection;
use super::metrics::{Metrics, Timeout};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower_service::Service;

/// Largest request line plus headers; more is answered 431.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// Largest number of request headers; more is answered 431.
const MAX_HEADERS: usize = 100;
/// The body of the answer to a connection over the limit.
const REFUSAL: &str = "{\"error\":\"too many connections (--max-connections); retry in a moment\"}";

/// The connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once, WebSocket sessions included.
    pub max_connections: u32,
    /// Time for a request's line and headers, from the connection's start or the previous
    /// answer (so idle keep-alive connections close after it too).
    pub header_timeout: Duration,
    /// How long a write may wait for the client to read.
    pub send_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` resolves; then stops accepting, lets each
/// connection finish its request in progress, and returns once every connection has ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (closing, closing_rx) = watch::channel(false);
    let mut stop = pin!(stop);
    let mut last_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e, &mut last_warning).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            refuse(&stream, &metrics);
            continue;
        };
        let connection = Connection::new(stream, place, limits.send_timeout, Arc::clone(&metrics));
        tokio::spawn(serve_connection(
            connection,
            peer,
            app.clone(),
            limits,
            Arc::clone(&metrics),
            closing_rx.clone(),
        ));
    }
    // No new connections from here on: the listening socket is closed.
    drop(listener);
    let _ = closing.send(true);
    // Each connection gives its place back when it ends, an upgraded one when its session
    // ends (live sessions close when the server stops).
    let _ = places.acquire_many(limits.max_connections).await;
}

/// Answers 503 at once and closes (the socket is dropped by the caller): the answer is one
/// small write that fits the socket's buffer, so it never waits.
fn refuse(stream: &TcpStream, metrics: &Metrics) {
    metrics.connections_refused.inc();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{REFUSAL}",
        REFUSAL.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// An accept that failed: a connection reset before it was accepted is nothing; running out
/// of file descriptors (or memory) is a warning at most once a minute, and a short pause
/// while the connections in progress end.
async fn accept_failed(error: &std::io::Error, last_warning: &mut Option<Instant>) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
        eprintln!(
            "warning: cannot accept a connection: {error} (see --max-connections and `ulimit -n`)"
        );
        *last_warning = Some(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One connection: HTTP/1 requests until it closes, times out, is upgraded, or the server
/// stops (then the request in progress finishes first).
async fn serve_connection(
    connection: Connection,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut closing: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().call(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let mut http = pin!(builder
        .serve_connection(TokioIo::new(connection), service)
        .with_upgrades());
    let mut stopping = false;
    loop {
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        metrics.timeout(Timeout::Header);
                    }
                }
                break;
            }
            _ = closing.wait_for(|closing| *closing), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The most connections the process's file limit allows, keeping some descriptors for model
/// files, libraries and the runtime; the soft limit is first raised to the hard one.
pub fn connections_the_file_limit_allows() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        const RESERVED: u64 = 128;
        let limit = getrlimit(Resource::Nofile);
        if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
            if soft < hard {
                let raised = rustix::process::Rlimit {
                    current: Some(hard),
                    maximum: Some(hard),
                };
                let _ = setrlimit(Resource::Nofile, raised);
            }
        }
        getrlimit(Resource::Nofile)
            .current
            .map(|n| n.saturating_sub(RESERVED).max(1))
    }
    #[cfg(not(unix))]
    {
        None
    }
}
