//! `infer --serve` against hostile and broken clients, the real server on loopback: slow and
//! idle clients are timed out, connections over the limit are refused at once, malformed
//! protocol input is answered or closed, and every connection is given back (the server's
//! file descriptors are counted). A thousand slow connections leave a normal request's
//! latency and the server's memory within bounds.
mod common;

use common::random_model;
use common::server::{
    body_of, connect, get, png, post, read_to_close, status_of, wait_until, Server,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tungstenite::Message;

/// A models folder with one random model, `a`.
fn models() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    random_model(&dir.path().join("a.safetensors"), 21);
    dir
}

/// The server's file descriptors once no client connection is open (the `/metrics` request
/// that checks it is closed before counting).
fn quiet_fds(server: &Server) -> usize {
    assert!(
        wait_until(Duration::from_secs(15), || {
            server.metric("faststyle_connections_open", None) == Some(1.0)
        }),
        "connections still open: {:?}\n{}",
        server.metric("faststyle_connections_open", None),
        server.stderr()
    );
    let mut count = server.open_fds();
    // The checking request's own connection closes a moment after its answer.
    for _ in 0..40 {
        thread::sleep(Duration::from_millis(100));
        let now = server.open_fds();
        if now == count {
            break;
        }
        count = now;
    }
    count
}

fn timeouts(server: &Server, phase: &str) -> f64 {
    server
        .metric(
            &format!("faststyle_timeouts_total{{phase=\"{phase}\"}}"),
            None,
        )
        .unwrap_or(0.0)
}

/// Writes `head`, then `trickle` one byte every `every` until the server closes (or 20 s).
fn trickler(mut stream: TcpStream, head: &[u8], every: Duration) -> thread::JoinHandle<()> {
    let head = head.to_vec();
    thread::spawn(move || {
        let start = Instant::now();
        if stream.write_all(&head).is_err() {
            return;
        }
        while start.elapsed() < Duration::from_secs(20) {
            thread::sleep(every);
            if stream.write_all(b"a").is_err() {
                return;
            }
        }
    })
}

/// Sends `body` in pieces at about `rate` bytes a second after `head`.
fn send_paced(stream: &mut TcpStream, head: &[u8], body: &[u8], rate: usize) {
    stream.write_all(head).unwrap();
    let piece = rate / 40; // 40 pieces a second
    for chunk in body.chunks(piece.max(1)) {
        stream.write_all(chunk).unwrap();
        thread::sleep(Duration::from_millis(25));
    }
}

fn ws_url(server: &Server) -> String {
    format!("ws://{}/v1/live?model=a", server.addr)
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn ws_connect(server: &Server) -> Socket {
    let (socket, _) = tungstenite::connect(ws_url(server)).expect("WebSocket upgrade");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    socket
}

/// Reads until a close frame: its code and reason, and when it came.
fn read_close(socket: &mut Socket) -> (u16, String, Duration) {
    let start = Instant::now();
    loop {
        match socket.read() {
            Ok(Message::Close(Some(frame))) => {
                return (
                    u16::from(frame.code),
                    frame.reason.to_string(),
                    start.elapsed(),
                )
            }
            Ok(Message::Close(None)) => return (0, String::new(), start.elapsed()),
            Ok(_) => {} // pings (answered by the library)
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

#[test]
fn slow_and_idle_clients_are_timed_out_and_their_connections_released() {
    let models = models();
    let server = Server::start(
        models.path(),
        &[
            "--header-timeout",
            "1",
            "--body-timeout",
            "1",
            "--min-body-rate",
            "1000",
            "--send-timeout",
            "1",
            "--ws-idle-timeout",
            "3",
            "--ws-ping-timeout",
            "1",
        ],
    );
    let url = format!("{}/v1/stylize?model=a", server.url);
    assert_eq!(post(&url, &png(16, 16, 1), None).status, 200); // warm
    let baseline = quiet_fds(&server);
    let closes_in_time = |what: &str, took: Duration, at_least: f64| {
        let secs = took.as_secs_f64();
        assert!(
            (at_least - 0.2..at_least + 4.0).contains(&secs),
            "{what}: closed after {secs:.2} s, expected about {at_least} s"
        );
    };

    // A WebSocket client that never reads (so never answers a ping) is dropped after two
    // ping periods; started first, it runs beside the rest.
    let mut deaf = ws_connect(&server);
    let deaf_since = Instant::now();

    // Headers a byte at a time (slowloris): closed at the header timeout, however steady.
    let mut slow = connect(&server.addr);
    let writer = trickler(
        slow.try_clone().unwrap(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_millis(100),
    );
    let (answer, took) = read_to_close(&mut slow);
    closes_in_time("slowloris", took, 1.0);
    assert_ne!(status_of(&answer), Some(200));
    writer.join().unwrap();

    // A connection that sends nothing, and one left idle after an answer (keep-alive).
    let (_, took) = read_to_close(&mut connect(&server.addr));
    closes_in_time("idle connection", took, 1.0);
    let mut kept = connect(&server.addr);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, took) = read_to_close(&mut kept);
    assert_eq!(status_of(&answer), Some(200));
    assert!(
        answer.ends_with(b"ok"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    closes_in_time("idle keep-alive connection", took, 1.0);

    // A body trickled below the minimum rate: 408 when its time is up.
    let mut trickled = connect(&server.addr);
    let writer = trickler(
        trickled.try_clone().unwrap(),
        b"POST /v1/stylize?model=a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        Duration::from_millis(100),
    );
    let (answer, took) = read_to_close(&mut trickled);
    assert_eq!(status_of(&answer), Some(408), "{}", body_of(&answer));
    assert!(
        body_of(&answer).contains("too slowly"),
        "{}",
        body_of(&answer)
    );
    closes_in_time("trickled body", took, 1.0);
    writer.join().unwrap();

    // A slow body above the minimum rate earns its time: longer than --body-timeout, and
    // answered 200.
    let photo = png(64, 48, 2);
    let mut paced = connect(&server.addr);
    let start = Instant::now();
    let head = format!(
        "POST /v1/stylize?model=a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        photo.len()
    );
    send_paced(&mut paced, head.as_bytes(), &photo, 4000);
    let (answer, _) = read_to_close(&mut paced);
    assert_eq!(status_of(&answer), Some(200), "{}", body_of(&answer));
    assert!(
        start.elapsed() > Duration::from_secs(1),
        "{} bytes at 4000 B/s should take longer than the 1 s grace",
        photo.len()
    );

    // A client that sends requests but does not read the answers: dropped at the send
    // timeout once the socket buffers are full.
    let mut deaf_reader = connect(&server.addr);
    let pipelined = "GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3000);
    deaf_reader.write_all(pipelined.as_bytes()).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || timeouts(&server, "send") >= 1.0),
        "a client that reads nothing was not timed out"
    );
    drop(deaf_reader);

    // A WebSocket session that answers pings but sends no frame: closed when idle.
    let mut idle = ws_connect(&server);
    let (code, reason, took) = read_close(&mut idle);
    assert_eq!(code, 1000);
    assert!(reason.contains("idle"), "{reason}");
    closes_in_time("idle WebSocket", took, 3.0);

    // The deaf WebSocket was closed long ago: its ping, then the close, wait for it.
    let (code, reason, _) = read_close(&mut deaf);
    assert_eq!(code, 1000);
    assert!(reason.contains("ping"), "{reason}");
    assert!(deaf_since.elapsed() > Duration::from_secs(2));

    for (phase, at_least) in [
        ("header", 3.0),
        ("body", 1.0),
        ("send", 1.0),
        ("ws_idle", 1.0),
        ("ws_ping", 1.0),
    ] {
        let count = timeouts(&server, phase);
        assert!(count >= at_least, "{phase}: {count} timeouts");
    }
    drop((slow, kept, trickled, paced, idle, deaf));
    assert_eq!(quiet_fds(&server), baseline, "file descriptors left open");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// Held by the tests that open thousands of sockets, so that together they stay within this
/// process's file limit.
static MANY_SOCKETS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Raises this process's soft file limit to its hard limit; the limit now.
fn raise_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(hard),
                    maximum: Some(hard),
                },
            );
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[test]
fn connections_over_the_limit_are_refused_at_once() {
    let _alone = MANY_SOCKETS.lock().unwrap_or_else(|e| e.into_inner());
    let models = models();
    let limit = 8;
    let server = Server::start(
        models.path(),
        &[
            "--max-connections",
            &limit.to_string(),
            "--header-timeout",
            "30",
        ],
    );
    let baseline = quiet_fds(&server);
    let held: Vec<TcpStream> = (0..limit).map(|_| connect(&server.addr)).collect();
    thread::sleep(Duration::from_millis(300));

    // A client that opens thousands of connections: every one over the limit gets a 503 at
    // once, and the server never holds more than its limit.
    let burst = (raise_file_limit().saturating_sub(200)).min(2000) as usize;
    let start = Instant::now();
    let mut crowd: Vec<TcpStream> = (0..burst).map(|_| connect(&server.addr)).collect();
    let opened = start.elapsed();
    // (Each refused connection is held only while it is answered.)
    assert!(
        wait_until(Duration::from_secs(2), || server.open_fds()
            <= baseline + limit),
        "the server holds {} descriptors",
        server.open_fds()
    );
    let mut slowest = Duration::ZERO;
    for stream in &mut crowd {
        let (answer, took) = read_to_close(stream);
        slowest = slowest.max(took);
        assert_eq!(
            status_of(&answer),
            Some(503),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(body_of(&answer).contains("too many connections"));
    }
    eprintln!("{burst} connections over the limit opened in {opened:?}, refused; slowest read {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "a refusal waited {slowest:?}"
    );
    drop(crowd);

    // Once places are free, connections are served again.
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || {
        std::panic::catch_unwind(|| get(&format!("{}/healthz", server.url), None).status)
            .is_ok_and(|s| s == 200)
    }));
    let refused = server
        .metric("faststyle_connections_refused_total", None)
        .unwrap();
    assert!(refused >= burst as f64, "{refused} refused of {burst}");
    assert_eq!(quiet_fds(&server), baseline, "file descriptors left open");
}

/// Sends `request` on a fresh connection; the answer and how long the server took to close.
fn exchange(server: &Server, request: &[u8]) -> (Vec<u8>, Duration) {
    let mut stream = connect(&server.addr);
    // The server may answer and close before all is sent.
    let _ = stream.write_all(request);
    read_to_close(&mut stream)
}

/// A WebSocket handshake by hand; the open stream after `101`.
fn raw_upgrade(server: &Server) -> TcpStream {
    let mut stream = connect(&server.addr);
    stream
        .write_all(
            b"GET /v1/live?model=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "closed during the handshake"
        );
        head.push(byte[0]);
    }
    assert_eq!(status_of(&head), Some(101));
    stream
}

#[test]
fn malformed_protocol_input_is_refused_and_leaks_nothing() {
    let models = models();
    let server = Server::start(models.path(), &["--max-upload-mb", "1"]);
    let baseline = quiet_fds(&server);

    // Bad HTTP, oversized heads: a 4xx where there is an answer, and the connection closed.
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not HTTP", b"GARBAGE\r\n\r\n".to_vec()),
        ("binary noise", noise),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("bad length", b"POST /v1/stylize?model=a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec()),
        ("length and chunked", b"POST /v1/stylize?model=a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("bad chunk", b"POST /v1/stylize?model=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n".to_vec()),
        ("header too large", format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(100 << 10)).into_bytes()),
        ("too many headers", format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes()),
        ("URI too long", format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(100 << 10)).into_bytes()),
        ("NUL in a header", b"GET /healthz HTTP/1.1\r\nHost: \0\r\n\r\n".to_vec()),
    ];
    for (what, request) in &cases {
        let (answer, took) = exchange(&server, request);
        let status = status_of(&answer);
        eprintln!("{what}: {status:?} in {took:?}");
        if let Some(status) = status {
            assert!((400..500).contains(&status), "{what}: {status}");
        }
        assert!(
            took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    }
    let (answer, _) = exchange(&server, cases[6].1.as_slice());
    assert_eq!(status_of(&answer), Some(431), "oversized header");

    // WebSocket upgrades with bad keys or versions: 400 with a JSON reason.
    for (what, key, version) in [
        ("no key", None, "13"),
        ("short key", Some("abc"), "13"),
        ("key not base64", Some("!!!!!!!!!!!!!!!!!!!!!!=="), "13"),
        ("old version", Some("dGhlIHNhbXBsZSBub25jZQ=="), "8"),
    ] {
        let key = key.map_or(String::new(), |k| format!("Sec-WebSocket-Key: {k}\r\n"));
        let request = format!(
            "GET /v1/live?model=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             {key}Sec-WebSocket-Version: {version}\r\nConnection: close\r\n\r\n"
        );
        let (answer, _) = exchange(&server, request.as_bytes());
        assert_eq!(
            status_of(&answer),
            Some(400),
            "{what}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert!(body_of(&answer).starts_with("{\"error\":"), "{what}");
    }

    // Bytes that are not WebSocket frames (unmasked, reserved bits): closed with 1002.
    let mut stream = raw_upgrade(&server);
    stream.write_all(&[0xF3, 0x05, 1, 2, 3, 4, 5]).unwrap();
    let (answer, took) = read_to_close(&mut stream);
    assert!(took < Duration::from_secs(5));
    assert_eq!(close_code(&answer), Some(1002), "{answer:?}");

    // A frame over the limit (only its header is sent): closed with 1009 on its header.
    let mut stream = raw_upgrade(&server);
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(2u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]); // mask
    stream.write_all(&header).unwrap();
    let (answer, _) = read_to_close(&mut stream);
    assert_eq!(close_code(&answer), Some(1009), "{answer:?}");

    // Text messages with unknown options, or too long, and garbage frames: errors, and the
    // session goes on.
    let mut socket = ws_connect(&server);
    for text in ["colour=red", "strength=2", &"x".repeat(5000)] {
        socket.send(Message::Text(text.into())).unwrap();
        let Message::Text(reply) = socket.read().unwrap() else {
            panic!("{text:.20}: expected an error message");
        };
        assert!(reply.contains("\"error\""), "{reply}");
    }
    socket
        .send(Message::Binary(b"\x89PNG garbage".to_vec().into()))
        .unwrap();
    let Message::Text(reply) = socket.read().unwrap() else {
        panic!("expected an error message for a broken frame");
    };
    assert!(reply.contains("\"error\""), "{reply}");
    socket.send(Message::Binary(png(24, 16, 3).into())).unwrap();
    assert!(
        matches!(socket.read().unwrap(), Message::Binary(_)),
        "the session went on"
    );
    socket.close(None).unwrap();
    drop(socket);

    assert_eq!(get(&format!("{}/healthz", server.url), None).status, 200);
    assert_eq!(quiet_fds(&server), baseline, "file descriptors left open");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// The code of the close frame at the start of what a server sent, if any.
fn close_code(answer: &[u8]) -> Option<u16> {
    match answer {
        [0x88, len, hi, lo, ..] if *len >= 2 => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// One stylize request's latency (the body is small, so this is the server's own time).
fn latency(url: &str, body: &[u8]) -> Duration {
    let start = Instant::now();
    let reply = post(url, body, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    start.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Holds `n` slow connections of four kinds: headers a byte at a time, bodies trickled,
/// idle WebSocket sessions, idle connections. One thread keeps the tricklers trickling.
struct Crowd {
    streams: Vec<TcpStream>,
    sockets: Vec<Socket>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    trickling: Option<thread::JoinHandle<()>>,
}

impl Crowd {
    fn open(server: &Server, n: usize) -> Crowd {
        let quarter = n / 4;
        let mut streams = Vec::new();
        let mut trickled = Vec::new();
        for i in 0..quarter * 2 {
            let mut s = connect(&server.addr);
            let head: &[u8] = if i % 2 == 0 {
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            } else {
                b"POST /v1/stylize?model=a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            };
            s.write_all(head).unwrap();
            trickled.push(s.try_clone().unwrap());
            streams.push(s);
        }
        let sockets: Vec<Socket> = (0..quarter).map(|_| ws_connect(server)).collect();
        streams.extend((0..n - quarter * 3).map(|_| connect(&server.addr)));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let trickling = thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut trickled {
                    let _ = s.write_all(b"a");
                }
                thread::sleep(Duration::from_millis(500));
            }
        });
        Crowd {
            streams,
            sockets,
            stop,
            trickling: Some(trickling),
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.trickling.take() {
            let _ = t.join();
        }
        self.streams.clear();
        self.sockets.clear();
    }
}

#[test]
fn a_thousand_slow_connections_leave_a_normal_request_fast() {
    let _alone = MANY_SOCKETS.lock().unwrap_or_else(|e| e.into_inner());
    let n = 1000;
    if raise_file_limit() < 2 * n as u64 + 200 {
        eprintln!(
            "skipped: the file limit ({}) is too low for {n} connections",
            raise_file_limit()
        );
        return;
    }
    let models = models();
    let timeout = 12.0;
    let server = Server::start(
        models.path(),
        &[
            "--max-connections",
            "1100",
            "--header-timeout",
            &timeout.to_string(),
            "--body-timeout",
            &timeout.to_string(),
            "--ws-idle-timeout",
            &timeout.to_string(),
            "--ws-ping-timeout",
            "6",
        ],
    );
    let url = format!("{}/v1/stylize?model=a", server.url);
    let photo = png(128, 96, 4);
    latency(&url, &photo); // warm
    let baseline = quiet_fds(&server);
    let (rss_before, _) = server.memory_kib();
    let unloaded = median((0..3).map(|_| latency(&url, &photo)).collect());

    let start = Instant::now();
    let crowd = Crowd::open(&server, n);
    let opened = start.elapsed();
    let held = server.metric("faststyle_connections_open", None).unwrap();
    let fds_held = server.open_fds();
    let loaded = median((0..3).map(|_| latency(&url, &photo)).collect());
    let (rss_held, peak) = server.memory_kib();
    assert!(
        start.elapsed() < Duration::from_secs_f64(timeout - 1.0),
        "the measurement outlasted the timeouts ({:?}): the machine is too slow for it",
        start.elapsed()
    );

    // The server's timeouts release every one of them, though the clients keep them open.
    let released = wait_until(Duration::from_secs_f64(timeout * 2.0 + 10.0), || {
        server.metric("faststyle_connections_open", None) == Some(1.0)
    });
    let fds_after = quiet_fds(&server);
    drop(crowd);
    eprintln!(
        "{n} slow connections opened in {opened:?}; held {held} (fds {baseline} → {fds_held} → \
         {fds_after}); a {}×{} request: {unloaded:?} unloaded, {loaded:?} under them ({:.2}×); \
         memory {} MiB before, {} MiB under them, peak {} MiB",
        128,
        96,
        loaded.as_secs_f64() / unloaded.as_secs_f64(),
        rss_before / 1024,
        rss_held / 1024,
        peak / 1024
    );
    assert!(held >= n as f64, "the server held {held} of {n}");
    assert!(
        loaded < unloaded + Duration::from_secs(3),
        "{loaded:?} under load against {unloaded:?}"
    );
    assert!(
        rss_held < rss_before + 200 * 1024,
        "memory grew from {rss_before} KiB to {rss_held} KiB"
    );
    assert!(released, "connections still open after the timeouts");
    assert_eq!(fds_after, baseline, "file descriptors left open");
}
