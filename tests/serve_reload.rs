//! Models that change under `infer --serve`: SIGHUP and `POST /v1/reload` rescan `--models`; a
//! request in flight finishes on the model it started with, new requests see the new set, a
//! half-written file is one warning while its old version serves, a removed model is 404.
//! The real server on loopback, random-weight models, results compared with `infer`'s files.
mod common;

use common::random_model;
use common::server::{connect, get, png, post, read_to_close, status_of, Server};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tungstenite::Message;

/// `models/` served, `versions/` with every model version written, `io/` for `infer`.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["models", "versions", "io"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Setup { dir }
    }

    fn path(&self, sub: &str, name: &str) -> PathBuf {
        self.dir.path().join(sub).join(name)
    }

    /// Writes version `seed` of a model under `versions/`.
    fn version(&self, seed: u64) -> PathBuf {
        let path = self.path("versions", &format!("{seed}.safetensors"));
        random_model(&path, seed);
        path
    }

    /// Puts a model file in place as a deployment would: a temporary name, then a rename.
    fn install(&self, name: &str, version: &Path) {
        let tmp = self.path("models", &format!("{name}.tmp"));
        std::fs::copy(version, &tmp).unwrap();
        std::fs::rename(&tmp, self.path("models", &format!("{name}.safetensors"))).unwrap();
    }

    /// What `infer -c version` writes for `photo`.
    fn expected(&self, version: &Path, photo: &Path) -> Vec<u8> {
        let out = self.path("io", "expected.png");
        let result = common::run(
            "infer",
            [
                "--device",
                "cpu",
                "-c",
                version.to_str().unwrap(),
                photo.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(result.status.success(), "{}", common::stderr(&result));
        std::fs::read(out).unwrap()
    }
}

/// A request whose headers and first body bytes are sent, the rest held back.
struct HeldUpload {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl HeldUpload {
    fn start(server: &Server, model: &str, body: &[u8]) -> HeldUpload {
        let mut stream = connect(&server.addr);
        write!(
            stream,
            "POST /v1/stylize?model={model} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body[..10]).unwrap();
        HeldUpload {
            stream,
            rest: body[10..].to_vec(),
        }
    }

    /// Sends the rest; the answer's body bytes.
    fn finish(mut self) -> Vec<u8> {
        self.stream.write_all(&self.rest).unwrap();
        let (answer, _) = read_to_close(&mut self.stream);
        assert_eq!(
            status_of(&answer),
            Some(200),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        answer[at..].to_vec()
    }
}

fn reload(server: &Server, token: Option<&str>) -> serde_json::Value {
    let reply = post(&format!("{}/v1/reload", server.url), b"", token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

fn names(server: &Server) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_slice(&get(&format!("{}/v1/models", server.url), None).body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn reloads_swap_the_models_and_requests_in_flight_keep_theirs() {
    let setup = Setup::new();
    let (a1, a2, b1, b2, c1) = (
        setup.version(31),
        setup.version(32),
        setup.version(33),
        setup.version(34),
        setup.version(35),
    );
    setup.install("a", &a1);
    setup.install("b", &b1);
    let server = Server::start(&setup.path("models", ""), &[]);
    let photo = setup.path("io", "photo.png");
    std::fs::write(&photo, png(40, 30, 5)).unwrap();
    let body = std::fs::read(&photo).unwrap();
    let stylize = |model: &str| {
        post(
            &format!("{}/v1/stylize?model={model}", server.url),
            &body,
            None,
        )
    };
    assert_eq!(stylize("a").body, setup.expected(&a1, &photo));

    // A rescan with nothing changed reloads nothing.
    let changes = reload(&server, None);
    assert_eq!(changes["unchanged"], 2, "{changes}");
    assert_eq!(changes["models"], serde_json::json!(["a", "b"]));

    // `a` replaced while a request on it is in flight: that request finishes on the old `a`,
    // the next one gets the new.
    let in_flight = HeldUpload::start(&server, "a", &body);
    std::thread::sleep(Duration::from_millis(300));
    setup.install("a", &a2);
    let changes = reload(&server, None);
    assert_eq!(changes["replaced"], serde_json::json!(["a"]), "{changes}");
    assert_eq!(
        in_flight.finish(),
        setup.expected(&a1, &photo),
        "in flight: the old model"
    );
    assert_eq!(
        stylize("a").body,
        setup.expected(&a2, &photo),
        "after: the new model"
    );

    // A live session on `a`, to see it follow the set.
    let (mut live, _) =
        tungstenite::connect(format!("ws://{}/v1/live?model=a", server.addr)).unwrap();
    let frame = png(24, 16, 6);
    live.send(Message::Binary(frame.clone().into())).unwrap();
    assert!(matches!(live.read().unwrap(), Message::Binary(_)));

    // `b` half-written at the moment of a SIGHUP: one warning, and its old version serves.
    let whole = std::fs::read(&b2).unwrap();
    std::fs::write(
        setup.path("models", "b.safetensors"),
        &whole[..whole.len() / 2],
    )
    .unwrap();
    server.signal("HUP");
    assert!(
        server.wait_stderr("(SIGHUP)", Duration::from_secs(60)),
        "{}",
        server.stderr()
    );
    let warnings: Vec<String> = server
        .stderr()
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains("b.safetensors"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", server.stderr());
    assert!(
        warnings[0].contains("previous version keeps serving"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        stylize("b").body,
        setup.expected(&b1, &photo),
        "the old b serves"
    );
    // Once the file is whole, the next rescan loads it.
    std::fs::write(setup.path("models", "b.safetensors"), &whole).unwrap();
    let changes = reload(&server, None);
    assert_eq!(changes["replaced"], serde_json::json!(["b"]), "{changes}");
    assert_eq!(stylize("b").body, setup.expected(&b2, &photo));

    // `a` removed and `c` added: `a` is 404 afterwards, `c` serves.
    std::fs::remove_file(setup.path("models", "a.safetensors")).unwrap();
    setup.install("c", &c1);
    let changes = reload(&server, None);
    assert_eq!(changes["removed"], serde_json::json!(["a"]), "{changes}");
    assert_eq!(changes["added"], serde_json::json!(["c"]), "{changes}");
    assert_eq!(names(&server), ["b", "c"]);
    let gone = stylize("a");
    assert_eq!(gone.status, 404);
    assert!(gone.error().contains("no model named"), "{}", gone.error());
    assert_eq!(stylize("c").body, setup.expected(&c1, &photo));

    // The live session's frames now say that its model is gone, until it names another.
    live.send(Message::Binary(frame.clone().into())).unwrap();
    let Message::Text(text) = live.read().unwrap() else {
        panic!("expected an error for a removed model");
    };
    assert!(text.contains("no model named `a`"), "{text}");
    live.send(Message::Text("model=c".into())).unwrap();
    live.send(Message::Binary(frame.into())).unwrap();
    assert!(matches!(live.read().unwrap(), Message::Binary(_)));
    live.close(None).unwrap();

    let metrics = get(&format!("{}/metrics", server.url), None).text();
    for line in [
        "faststyle_model_reloads_total 5",
        "faststyle_model_load_errors_total 1",
        "faststyle_models 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[test]
fn a_reload_needs_the_token_and_a_folder_that_can_be_read() {
    let setup = Setup::new();
    setup.install("a", &setup.version(41));
    let server = Server::start(&setup.path("models", ""), &["--token", "s3cret"]);
    let url = format!("{}/v1/reload", server.url);
    assert_eq!(post(&url, b"", None).status, 401);
    assert_eq!(post(&url, b"", Some("wrong")).status, 401);
    assert_eq!(get(&url, Some("s3cret")).status, 405);
    assert_eq!(
        reload(&server, Some("s3cret"))["models"],
        serde_json::json!(["a"])
    );

    // The folder gone (say, mid-deployment): an error, and the models loaded before serve.
    let models = setup.path("models", "");
    let moved = setup.path("io", "moved");
    std::fs::rename(&models, &moved).unwrap();
    let reply = post(&url, b"", Some("s3cret"));
    assert_eq!(reply.status, 500);
    assert!(reply.error().contains("keep serving"), "{}", reply.error());
    std::fs::rename(&moved, &models).unwrap();
    let reply = post(
        &format!("{}/v1/stylize?model=a", server.url),
        &png(16, 16, 1),
        Some("s3cret"),
    );
    assert_eq!(reply.status, 200);
}
