//! One accepted connection as hyper (and, after an upgrade, the WebSocket) reads and writes it:
//! the socket, its place under `--max-connections` (given back when the connection is dropped,
//! whatever took it over), and a send timeout, so that a client that stops reading cannot hold
//! a connection and its unsent answer for ever.
use super::metrics::{Metrics, Timeout};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

/// A socket with its place and its send timeout.
pub struct Connection {
    stream: TcpStream,
    /// How long a write may wait for the client to read.
    send_timeout: Duration,
    /// Armed while a write waits; cleared when the client reads again.
    stalled: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
    _place: OwnedSemaphorePermit,
}

impl Connection {
    /// Wraps an accepted socket that holds `place`.
    pub fn new(
        stream: TcpStream,
        place: OwnedSemaphorePermit,
        send_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Connection {
        // Small answers go out at once (the WebSocket's frames especially).
        let _ = stream.set_nodelay(true);
        metrics.connections_open.inc();
        Connection {
            stream,
            send_timeout,
            stalled: None,
            metrics,
            _place: place,
        }
    }

    /// What a write that could not proceed returns: still waiting, or the timeout's error.
    fn wait_for_reader<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.send_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.metrics.timeout(Timeout::Send);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {} s", timeout.as_secs_f64()),
                )))
            }
        }
    }

    /// Passes a finished write through, clearing the timer.
    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.wait_for_reader(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.progressed(result, cx)
    }
}
