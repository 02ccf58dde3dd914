//! `infer --serve` end to end: the real server on a free loopback port with random-weight
//! models written by the tests, driven over HTTP and WebSocket.
mod common;

use common::server::{get, post, wait_until, Server};
use common::{random_model, random_styles_model, test_image};
use image::{ImageFormat, RgbImage, RgbaImage};
use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tungstenite::Message;

/// A models folder: `a`, `sub/b`, a broken model file, a training-state file and a text
/// file; and a folder for inputs and outputs.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(models.join("sub")).unwrap();
        random_model(&models.join("a.safetensors"), 11);
        random_model(&models.join("sub/b.safetensors"), 12);
        std::fs::write(models.join("broken.safetensors"), b"not a safetensors file").unwrap();
        std::fs::write(models.join("a.state.safetensors"), b"skipped by name").unwrap();
        std::fs::write(models.join("notes.txt"), b"not a model").unwrap();
        std::fs::create_dir_all(dir.path().join("io")).unwrap();
        Setup { dir }
    }

    fn models(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    fn io(&self, name: &str) -> PathBuf {
        self.dir.path().join("io").join(name)
    }
}

fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn png(w: u32, h: u32, seed: u64) -> Vec<u8> {
    encode(&test_image(w, h, seed, 0, 255), ImageFormat::Png)
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("the answer is an image");
    (image.width(), image.height())
}

/// What `infer` writes for `input` with `args`, to an output named `out`.
fn infer_output(setup: &Setup, input: &Path, out: &str, args: &[&str]) -> Vec<u8> {
    infer_file(
        &setup.models().join("a.safetensors"),
        input,
        &setup.io(out),
        args,
    )
}

/// What `infer -c model` writes for `input` with `args`, to `output`.
fn infer_file(model: &Path, input: &Path, output: &Path, args: &[&str]) -> Vec<u8> {
    let result = common::run(
        "infer",
        [
            "--device",
            "cpu",
            "-c",
            model.to_str().unwrap(),
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ]
        .iter()
        .chain(args),
    );
    assert!(result.status.success(), "{}", common::stderr(&result));
    std::fs::read(output).unwrap()
}

#[test]
fn results_equal_what_infer_writes() {
    let setup = Setup::new();
    let server = Server::start(&setup.models(), &[]);
    let stylize = |query: &str, body: &[u8]| {
        let reply = post(
            &format!("{}/v1/stylize?model=a{query}", server.url),
            body,
            None,
        );
        assert_eq!(reply.status, 200, "{query}: {}", reply.text());
        reply
    };

    // PNG in, PNG out; odd size.
    let photo = setup.io("photo.png");
    std::fs::write(&photo, png(37, 29, 1)).unwrap();
    let reply = stylize("", &std::fs::read(&photo).unwrap());
    assert_eq!(reply.content_type, "image/png");
    assert_eq!(
        reply.body,
        infer_output(&setup, &photo, "photo-out.png", &[])
    );

    // JPEG in, JPEG out, with every colour option and a size limit.
    let jpeg = setup.io("photo.jpg");
    std::fs::write(
        &jpeg,
        encode(&test_image(80, 60, 2, 0, 255), ImageFormat::Jpeg),
    )
    .unwrap();
    let reply = stylize(
        "&strength=0.6&preserve_color=true&max_size=40&quality=70",
        &std::fs::read(&jpeg).unwrap(),
    );
    assert_eq!(reply.content_type, "image/jpeg");
    assert_eq!(dimensions(&reply.body), (40, 30));
    let expected = infer_output(
        &setup,
        &jpeg,
        "photo-out.jpg",
        &[
            "--strength",
            "0.6",
            "--preserve-color",
            "--max-size",
            "40",
            "--quality",
            "70",
        ],
    );
    assert_eq!(reply.body, expected);

    // A format asked for; alpha carried through.
    let rgba = RgbaImage::from_fn(21, 13, |x, y| {
        image::Rgba([x as u8 * 12, y as u8 * 19, 90, (x * y) as u8])
    });
    let alpha_png = setup.io("alpha.png");
    rgba.save(&alpha_png).unwrap();
    let reply = stylize("&format=webp", &std::fs::read(&alpha_png).unwrap());
    assert_eq!(reply.content_type, "image/webp");
    assert_eq!(
        reply.body,
        infer_output(&setup, &alpha_png, "alpha-out.webp", &[])
    );

    // The other model answers differently.
    let b = post(
        &format!("{}/v1/stylize?model=sub/b", server.url),
        &std::fs::read(&photo).unwrap(),
        None,
    );
    assert_eq!(b.status, 200);
    assert_ne!(b.body, infer_output(&setup, &photo, "photo-out2.png", &[]));
}

#[test]
fn styles_are_chosen_as_infer_chooses_them() {
    // `duo` holds two styles; `one` holds one (named `random`, as its file records).
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let duo = models.join("duo.safetensors");
    random_styles_model(&duo, 21, &["candy", "wave"]);
    random_model(&models.join("one.safetensors"), 22);
    let server = Server::start(&models, &[]);
    let url = |path: &str| format!("{}{path}", server.url);

    // The catalog lists the styles of `duo` only.
    let list: serde_json::Value =
        serde_json::from_slice(&get(&url("/v1/models"), None).body).unwrap();
    assert_eq!(list[0]["name"], "duo", "{list}");
    assert_eq!(list[0]["styles"], serde_json::json!(["candy", "wave"]));
    assert_eq!(list[1]["name"], "one", "{list}");
    assert!(list[1].get("styles").is_none(), "{list}");

    // A pick by name, by index, and a blend: each the file `infer --style` writes.
    let photo = dir.path().join("photo.png");
    std::fs::write(&photo, png(40, 32, 21)).unwrap();
    let body = std::fs::read(&photo).unwrap();
    let stylize = |query: &str| post(&url(&format!("/v1/stylize?{query}")), &body, None);
    let mut answers = Vec::new();
    for (i, choice) in ["wave", "1", "candy:1,wave:3", "candy"].iter().enumerate() {
        let reply = stylize(&format!("model=duo&style={choice}"));
        assert_eq!(reply.status, 200, "{choice}: {}", reply.text());
        let expected = infer_file(
            &duo,
            &photo,
            &dir.path().join(format!("out{i}.png")),
            &["--style", choice],
        );
        assert!(reply.body == expected, "style={choice} differs from infer");
        answers.push(reply.body);
    }
    // The choice matters: a blend is neither style, and the two styles differ.
    assert_eq!(answers[0], answers[1], "`wave` and `1` are the same style");
    assert_ne!(answers[0], answers[2]);
    assert_ne!(answers[2], answers[3]);
    assert_ne!(answers[0], answers[3]);

    // A multi-style model without a style, or with one it does not hold: 400 listing them.
    let reply = stylize("model=duo");
    assert_eq!(reply.status, 400);
    let error = reply.error();
    assert!(
        error.contains("2 styles") && error.contains("0 candy, 1 wave"),
        "{error}"
    );
    for bad in ["oil", "2", "candy:x", "candy:1,oil:1", ""] {
        let reply = stylize(&format!("model=duo&style={bad}"));
        assert_eq!(reply.status, 400, "style={bad}");
        let error = reply.error();
        assert!(
            error.contains("style") && error.contains("0 candy, 1 wave"),
            "style={bad}: {error}"
        );
    }

    // A one-style model takes no style, its own name or 0, as `infer` does; nothing else.
    let plain = stylize("model=one");
    assert_eq!(plain.status, 200);
    for own in ["random", "0"] {
        let reply = stylize(&format!("model=one&style={own}"));
        assert_eq!(reply.status, 200, "style={own}: {}", reply.text());
        assert_eq!(reply.body, plain.body, "style={own}");
    }
    for other in ["candy", "1"] {
        let reply = stylize(&format!("model=one&style={other}"));
        assert_eq!(reply.status, 400, "style={other}");
        assert!(reply.error().contains("0 random"), "{}", reply.error());
        let out = common::run(
            "infer",
            [
                "--device",
                "cpu",
                "-c",
                models.join("one.safetensors").to_str().unwrap(),
                photo.to_str().unwrap(),
                "-o",
                dir.path().join("refused.png").to_str().unwrap(),
                "--style",
                other,
            ],
        );
        assert!(!out.status.success(), "infer takes --style {other} too");
    }

    // One preview per style; a multi-style model's preview needs a style (not a blend).
    let preview = |query: &str| get(&url(&format!("/v1/preview?{query}")), None);
    let candy = preview("model=duo&style=candy");
    let wave = preview("model=duo&style=1");
    assert_eq!((candy.status, wave.status), (200, 200));
    assert_eq!(dimensions(&wave.body), (128, 96));
    assert_ne!(candy.body, wave.body);
    assert_eq!(preview("model=duo&style=wave").body, wave.body);
    assert_eq!(preview("model=duo").status, 400);
    assert_eq!(preview("model=duo&style=candy:1,wave:1").status, 400);
    assert_eq!(preview("model=one").status, 200);

    // Live: the style of the query, then of a text message; another model drops it.
    assert_eq!(get(&url("/v1/live?model=duo"), None).status, 400);
    let (mut socket, _) =
        tungstenite::connect(format!("ws://{}/v1/live?model=duo&style=wave", server.addr)).unwrap();
    let frame = encode(&test_image(48, 40, 22, 0, 255), ImageFormat::Jpeg);
    let mut live = |message: Option<&str>| {
        if let Some(text) = message {
            socket.send(Message::Text(text.into())).unwrap();
        }
        socket.send(Message::Binary(frame.clone().into())).unwrap();
        match socket.read().unwrap() {
            Message::Binary(jpeg) => jpeg.to_vec(),
            other => panic!("expected a frame, got {other:?}"),
        }
    };
    let same = |query: &str| {
        let reply = post(&url(&format!("/v1/stylize?{query}")), &frame, None);
        assert_eq!(reply.status, 200, "{query}");
        reply.body
    };
    assert_eq!(live(None), same("model=duo&style=wave"));
    assert_eq!(
        live(Some("style=candy:1,wave:3")),
        same("model=duo&style=candy:1,wave:3")
    );
    assert_eq!(live(Some("model=one")), same("model=one"));
    socket.send(Message::Text("model=duo".into())).unwrap();
    let Message::Text(text) = socket.read().unwrap() else {
        panic!("expected an error message");
    };
    assert!(text.contains("0 candy, 1 wave"), "{text}");
    socket.close(None).unwrap();
}

#[test]
fn every_status_of_the_contract() {
    let setup = Setup::new();
    let server = Server::start(
        &setup.models(),
        &["--max-upload-mb", "1", "--max-pixels", "5000"],
    );
    let url = |path: &str| format!("{}{path}", server.url);

    let health = get(&url("/healthz"), None);
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));

    let models = get(&url("/v1/models"), None);
    assert_eq!(models.status, 200);
    let list: serde_json::Value = serde_json::from_slice(&models.body).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "sub/b"], "{list}");
    assert!(
        server.stderr().contains("broken.safetensors"),
        "one warning for the broken model: {}",
        server.stderr()
    );

    let preview = get(&url("/v1/preview?model=sub/b"), None);
    assert_eq!(preview.status, 200);
    assert_eq!(dimensions(&preview.body), (128, 96));

    let small = png(40, 30, 3); // 1200 pixels: under the limit
    let stylize =
        |query: &str, body: &[u8]| post(&url(&format!("/v1/stylize?{query}")), body, None);
    assert_eq!(stylize("model=a", &small).status, 200);

    // 400: a body that does not decode names the decoder's reason; bad parameters name the
    // parameter.
    let reply = stylize("model=a", b"this is not an image");
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("not an image"), "{}", reply.error());
    let truncated = &small[..small.len() / 2];
    assert_eq!(stylize("model=a", truncated).status, 400);
    assert_eq!(stylize("model=a", b"").status, 400);
    for (query, named) in [
        ("model=a&strength=2", "strength"),
        ("model=a&strength=abc", "strength"),
        ("model=a&preserve_color=maybe", "preserve_color"),
        ("model=a&max_size=0", "max_size"),
        ("model=a&format=heic", "format"),
        ("model=a&quality=101", "quality"),
        ("model=a&style=x", "style"),
        ("model=a&colour=red", "colour"),
        ("strength=1", "model"),
    ] {
        let reply = stylize(query, &small);
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.error().contains(named), "{query}: {}", reply.error());
    }

    // 404: unknown models (never read as paths), unknown routes.
    for name in ["nope", "../models/a", "a.safetensors", "/a", "sub"] {
        let reply = stylize(&format!("model={name}"), &small);
        assert_eq!(reply.status, 404, "{name}");
        assert!(
            reply.error().contains("no model named"),
            "{}",
            reply.error()
        );
    }
    let reply = get(&url("/v2/anything"), None);
    assert_eq!(reply.status, 404);
    reply.error();

    // 405 from the router is JSON too.
    let reply = get(&url("/v1/stylize?model=a"), None);
    assert_eq!(reply.status, 405);
    reply.error();

    // 413: over the upload limit (declared length, and a chunked body), over the pixel limit.
    // (The server answers before the body is in: a plain socket reads that answer where an
    // HTTP client would stop at the broken pipe.)
    let big = vec![0u8; (1 << 20) + 1];
    for chunked in [false, true] {
        let (status, body) = raw_post(&server.addr, "/v1/stylize?model=a", &big, chunked);
        assert_eq!(status, 413, "{body}");
        assert!(body.starts_with("{\"error\":"), "{body}");
        assert!(body.contains("limit"), "{body}");
    }
    let large = png(100, 100, 4); // 10,000 pixels
    let reply = stylize("model=a", &large);
    assert_eq!(reply.status, 413);
    assert!(reply.error().contains("max_size"), "{}", reply.error());
    // Asking to shrink it makes it acceptable.
    let reply = stylize("model=a&max_size=50", &large);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(dimensions(&reply.body), (50, 50));

    // 404 and 400 before a WebSocket upgrade.
    assert_eq!(get(&url("/v1/live?model=nope"), None).status, 404);
    let reply = get(&url("/v1/live?model=a"), None);
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("WebSocket"), "{}", reply.error());

    // The metrics count what happened, by route and status.
    let metrics = get(&url("/metrics"), None);
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for line in [
        "faststyle_http_requests_total{route=\"/v1/stylize\",status=\"200\"} 2",
        "faststyle_http_requests_total{route=\"/v1/stylize\",status=\"413\"} 3",
        "faststyle_model_load_errors_total 1",
        "faststyle_images_stylized_total 2",
        "faststyle_queue_depth 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert!(text.contains("faststyle_http_request_duration_seconds_bucket{le="));
}

/// Declares a body's length and sends none of it (the server must refuse on the length
/// alone), or sends it chunked (length unknown in advance), reading the answer when the
/// server closes early; returns status and body.
fn raw_post(addr: &str, path: &str, body: &[u8], chunked: bool) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{framing}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    if chunked {
        for chunk in body.chunks(64 << 10) {
            let sent = write!(stream, "{:x}\r\n", chunk.len())
                .and_then(|()| stream.write_all(chunk))
                .and_then(|()| stream.write_all(b"\r\n"));
            if sent.is_err() {
                break; // answered and closed before the whole body was sent
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// A request whose headers and first body bytes are sent, the rest held back: it holds one of
/// the server's places until it is finished or dropped.
struct HeldUpload {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl HeldUpload {
    fn start(addr: &str, path: &str, body: &[u8], token: Option<&str>) -> HeldUpload {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body[..10]).unwrap();
        stream.flush().unwrap();
        HeldUpload {
            stream,
            rest: body[10..].to_vec(),
        }
    }

    fn finish(mut self) -> (u16, String) {
        self.stream.write_all(&self.rest).unwrap();
        read_response(&mut self.stream)
    }
}

#[test]
fn a_full_queue_answers_503_and_a_burst_is_all_answered() {
    let setup = Setup::new();
    // --queue 1 on the CPU: two requests at work at most (one waiting, one in the network).
    let server = Server::start(&setup.models(), &["--queue", "1"]);
    let path = "/v1/stylize?model=a";
    let body = png(64, 48, 5);

    // Uploads still arriving hold no place: with three of them held open, a request goes
    // through.
    let held: Vec<_> = (0..3)
        .map(|_| HeldUpload::start(&server.addr, path, &body, None))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let through = post(&format!("{}{path}", server.url), &body, None);
    assert_eq!(through.status, 200, "{}", through.text());

    // Two pictures at work (one in the network, one waiting for it) hold both places: the
    // next request is refused.
    let at_work: Vec<_> = (0..2)
        .map(|i| {
            let url = format!("{}{path}", server.url);
            let big = png(640, 480, 50 + i);
            std::thread::spawn(move || post(&url, &big, None).status)
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || {
            server.metric("faststyle_queue_depth", None) == Some(1.0)
        }),
        "the two pictures never were at work together"
    );
    let refused = post(&format!("{}{path}", server.url), &body, None);
    assert_eq!(refused.status, 503, "{}", refused.status);
    let wait: u64 = refused
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    assert!(refused.error().contains("busy"));
    for worker in at_work {
        assert_eq!(worker.join().unwrap(), 200);
    }
    for upload in held {
        let (status, _) = upload.finish();
        assert_eq!(status, 200);
    }

    // A burst: every request is answered 200 or 503, none lost, none hanging.
    let n = 24;
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let url = format!("{}{path}", server.url);
            let body = png(48 + i % 3 * 8, 40, i as u64);
            std::thread::spawn(move || {
                let reply = post(&url, &body, None);
                if reply.status == 200 {
                    assert_eq!(dimensions(&reply.body), (48 + i % 3 * 8, 40));
                } else {
                    assert_eq!(reply.status, 503, "{}", reply.status);
                    assert!(reply.retry_after.is_some());
                }
                reply.status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    eprintln!(
        "burst of {n}: {ok} answered 200, {} answered 503",
        n as usize - ok
    );
    assert_eq!(statuses.len(), n as usize);
    assert!(ok >= 1);

    // Still healthy, and nothing left waiting.
    assert_eq!(get(&format!("{}/healthz", server.url), None).status, 200);
    let metrics = get(&format!("{}/metrics", server.url), None).text();
    assert!(
        metrics.lines().any(|l| l == "faststyle_queue_depth 0"),
        "{metrics}"
    );
}

#[test]
fn the_token_guards_the_api() {
    let setup = Setup::new();
    let server = Server::start(&setup.models(), &["--token", "s3cret"]);
    let url = |path: &str| format!("{}{path}", server.url);
    for (path, token) in [
        ("/v1/models", None),
        ("/v1/models", Some("wrong")),
        ("/v1/models", Some("s3cret2")),
        ("/metrics", None),
        ("/v1/preview?model=a", None),
    ] {
        let reply = get(&url(path), token);
        assert_eq!(reply.status, 401, "{path} {token:?}");
        assert!(reply.error().contains("token"));
    }
    let reply = post(&url("/v1/stylize?model=a"), &png(8, 8, 1), None);
    assert_eq!(reply.status, 401);
    // The token is checked before the model, so names cannot be probed without it.
    assert_eq!(post(&url("/v1/stylize?model=nope"), b"", None).status, 401);

    assert_eq!(get(&url("/v1/models"), Some("s3cret")).status, 200);
    assert_eq!(get(&url("/metrics"), Some("s3cret")).status, 200);
    let reply = post(&url("/v1/stylize?model=a"), &png(8, 8, 1), Some("s3cret"));
    assert_eq!(reply.status, 200);
    // The page and the health check stay open (the page asks for the token).
    assert_eq!(get(&url("/healthz"), None).status, 200);
    let page = get(&url("/"), None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<script src=\"app.js\">"));

    // A browser cannot set headers on a WebSocket: the live route takes the token in its query.
    let ws =
        |query: &str| tungstenite::connect(format!("ws://{}/v1/live?model=a{query}", server.addr));
    match ws("") {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let (mut socket, _) = ws("&access_token=s3cret").expect("upgrade with the token");
    socket.close(None).unwrap();
}

#[test]
fn live_frames_are_answered_and_stale_ones_dropped() {
    let setup = Setup::new();
    let server = Server::start(&setup.models(), &[]);
    let (mut socket, _) =
        tungstenite::connect(format!("ws://{}/v1/live?model=a&quality=80", server.addr)).unwrap();
    let frame = encode(&test_image(96, 72, 7, 0, 255), ImageFormat::Jpeg);

    // One frame, one stylized JPEG of its size.
    socket.send(Message::Binary(frame.clone().into())).unwrap();
    let reply = socket.read().unwrap();
    let Message::Binary(jpeg) = reply else {
        panic!("expected a frame, got {reply:?}");
    };
    assert_eq!(image::guess_format(&jpeg).unwrap(), ImageFormat::Jpeg);
    assert_eq!(dimensions(&jpeg), (96, 72));

    // A broken frame is an error message; the session goes on.
    socket
        .send(Message::Binary(b"garbage".to_vec().into()))
        .unwrap();
    let Message::Text(text) = socket.read().unwrap() else {
        panic!("expected an error message");
    };
    assert!(text.contains("\"error\""), "{text}");

    // Parameters change with a text message.
    socket.send(Message::Text("strength=0".into())).unwrap();
    socket.send(Message::Binary(frame.clone().into())).unwrap();
    let Message::Binary(unstyled) = socket.read().unwrap() else {
        panic!("expected a frame");
    };
    assert_ne!(
        unstyled, jpeg,
        "strength 0 gives the frame back, not the stylized one"
    );
    socket.send(Message::Text("strength=7".into())).unwrap();
    let Message::Text(text) = socket.read().unwrap() else {
        panic!("expected an error message");
    };
    assert!(text.contains("strength"), "{text}");

    // Frames sent faster than the network: every frame gets one answer, some are dropped.
    let sent = 12;
    for _ in 0..sent {
        socket.send(Message::Binary(frame.clone().into())).unwrap();
    }
    let (mut stylized, mut dropped) = (0, 0);
    for _ in 0..sent {
        match socket.read().unwrap() {
            Message::Binary(_) => stylized += 1,
            Message::Text(t) if t.contains("dropped") => dropped += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("{sent} frames sent at once: {stylized} stylized, {dropped} dropped");
    assert!(
        stylized >= 1 && dropped >= 1,
        "{stylized} stylized, {dropped} dropped"
    );
    let metrics = get(&format!("{}/metrics", server.url), None).text();
    assert!(
        metrics.contains(&format!("faststyle_live_frames_dropped_total {dropped}")),
        "{metrics}"
    );
    socket.close(None).unwrap();
}

#[test]
fn a_signal_stops_the_server_after_the_requests_in_flight() {
    let setup = Setup::new();
    for signal in ["TERM", "INT"] {
        let mut server = Server::start(&setup.models(), &[]);
        let path = "/v1/stylize?model=a";
        let body = png(40, 30, 9);
        let upload = HeldUpload::start(&server.addr, path, &body, None);
        let (mut live, _) =
            tungstenite::connect(format!("ws://{}/v1/live?model=a", server.addr)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        server.signal(signal);
        std::thread::sleep(Duration::from_millis(300));

        // New connections are refused.
        assert!(
            TcpStream::connect(&server.addr).is_err(),
            "SIG{signal}: a new connection was accepted"
        );
        // The live session is told that the server goes away.
        match live.read() {
            Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("SIG{signal}: expected a close frame, got {other:?}"),
        }
        // The request in flight finishes with its result.
        let (status, _) = upload.finish();
        assert_eq!(status, 200, "SIG{signal}");
        let exit = server
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("SIG{signal}: still running"));
        assert_eq!(exit.code(), Some(0), "SIG{signal}: {}", server.stderr());
        assert!(server.stderr().contains("stopped"), "{}", server.stderr());
    }
}

#[test]
fn starting_fails_clearly_without_models() {
    let empty = tempfile::tempdir().unwrap();
    let out = common::run(
        "infer",
        [
            "--serve",
            "127.0.0.1:0",
            "--device",
            "cpu",
            "--models",
            empty.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let errors = common::error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", common::stderr(&out));
    assert!(errors[0].contains("no style model"), "{}", errors[0]);

    let setup = Setup::new();
    let out = common::run(
        "infer",
        [
            "--serve",
            "256.0.0.1:1",
            "--device",
            "cpu",
            "--models",
            setup.models().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("cannot listen on 256.0.0.1:1"),
        "{}",
        common::stderr(&out)
    );
}
