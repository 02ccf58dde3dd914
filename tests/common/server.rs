//! A real `infer --serve` process on a free loopback port, for the server's tests.
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running server; killed when dropped, unless it was stopped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `infer --serve 127.0.0.1:0 --models DIR --device cpu EXTRA…` and waits until it
    /// prints the address it listens on (port 0: the system picks a free port).
    pub fn start(models: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(super::bin("infer"))
            .args(["--serve", "127.0.0.1:0", "--device", "cpu", "--models"])
            .arg(models)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start infer --serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().expect("stderr");
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    stderr.lock().unwrap().push_str(&text);
                }
            });
        }
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("cannot read the server's first line");
        let Some(start) = line.find("http://") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not start: {line}\n{}",
                stderr.lock().unwrap()
            );
        };
        let url = line[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        let addr = url.trim_start_matches("http://").to_string();
        Server {
            child,
            url,
            addr,
            stderr,
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal (`TERM`, `INT`) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// File descriptors the server holds now (Linux: `/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("cannot list the server's file descriptors")
            .count()
    }

    /// The server's resident memory now and at its peak, in KiB (Linux: `/proc/PID/status`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("cannot read the server's status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in the server's status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The value of one series in `/metrics` (its name with labels, as printed), if present.
    pub fn metric(&self, series: &str, token: Option<&str>) -> Option<f64> {
        let text = get(&format!("{}/metrics", self.url), token).text();
        metric_in(&text, series)
    }

    /// Waits up to `limit` for the stderr to contain `text`.
    pub fn wait_stderr(&self, text: &str, limit: Duration) -> bool {
        wait_until(limit, || self.stderr().contains(text))
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns every status as a response (not as an error).
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A finished HTTP exchange: status, headers of interest, body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// `Retry-After`, if sent.
    pub retry_after: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    fn from(mut response: ureq::http::Response<ureq::Body>) -> Reply {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let body = response
            .body_mut()
            .with_config()
            .limit(200 << 20)
            .read_to_vec()
            .expect("cannot read the body");
        Reply {
            status: response.status().as_u16(),
            content_type,
            retry_after,
            body,
        }
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` of a JSON error body; panics when the body is not one.
    pub fn error(&self) -> String {
        assert!(
            self.content_type.starts_with("application/json"),
            "status {} with content type {:?}: {}",
            self.status,
            self.content_type,
            self.text()
        );
        assert_eq!(
            self.text().lines().count(),
            1,
            "not one line: {}",
            self.text()
        );
        let json: serde_json::Value = serde_json::from_slice(&self.body).expect("JSON");
        json["error"]
            .as_str()
            .expect("an `error` string")
            .to_string()
    }
}

/// `GET url`, with an optional bearer token.
pub fn get(url: &str, token: Option<&str>) -> Reply {
    let mut request = client().get(url);
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    Reply::from(request.call().expect("GET failed"))
}

/// `POST url` with `body`, with an optional bearer token.
pub fn post(url: &str, body: &[u8], token: Option<&str>) -> Reply {
    let mut request = client().post(url);
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    Reply::from(request.send(body).expect("POST failed"))
}

/// The value of one series (its name with labels, as printed) in a `/metrics` text.
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `condition` every 50 ms for up to `limit`; whether it became true.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A small PNG of the test image.
pub fn png(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    super::test_image(w, h, seed, 0, 255)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A plain TCP connection to the server (30 s read timeout), for what an HTTP client would
/// not send.
pub fn connect(addr: &str) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).expect("cannot connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection (or resets it): what came, and how long
/// after the call it closed. Panics when it stays open for 30 s.
pub fn read_to_close(stream: &mut std::net::TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the server kept the connection open ({e}) after {:?}: {:?}",
                start.elapsed(),
                String::from_utf8_lossy(&answer)
            ),
        }
    }
    (answer, start.elapsed())
}

/// The status of a raw HTTP answer, if it is one.
pub fn status_of(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    let mut words = text.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

/// The body of a raw HTTP answer (after the blank line), as text.
pub fn body_of(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string())
}
