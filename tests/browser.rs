//! The page of `infer --serve` in real headless Chromium, driven through WebDriver
//! (chromedriver): upload a photo and see it stylized; start the (fake) camera and see the
//! stylized stream with its frame rate. Skipped, visibly, when Chromium or chromedriver is
//! missing (scripts/setup.sh installs Debian's `chromium` and `chromium-driver` as root).
//!
//! `FASTSTYLE_SCREENSHOT=FILE.png` also saves a screenshot of the page after the photo;
//! `FASTSTYLE_SCREENSHOT_MODELS=DIR` and `FASTSTYLE_SCREENSHOT_PHOTO=FILE` then replace the
//! random models and the test photo (the README's screenshot is made this way).
mod common;

use common::server::Server;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the page may take for one step (the CPU of a CI machine is slow and shared).
const STEP: Duration = Duration::from_secs(90);

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(program: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < STEP, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=1280,900",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("cannot open a Chromium session")
}

/// Evaluates `script` (a function body returning a value) until it returns something other
/// than null or false; panics with `what` after [`STEP`].
async fn wait_for(client: &Client, what: &str, script: &str) -> Value {
    let start = Instant::now();
    loop {
        let value = client.execute(script, vec![]).await.expect("script failed");
        if !(value.is_null() || value == json!(false)) {
            return value;
        }
        if start.elapsed() > STEP {
            let status = client
                .execute(
                    "return [...document.querySelectorAll('.status')].map(e => e.textContent).join(' | ')",
                    vec![],
                )
                .await
                .unwrap_or_default();
            panic!("timed out waiting for {what}; the page says: {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_page_stylizes_a_photo_and_the_camera() {
    let (Some(chromium), Some(chromedriver)) = (
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        find_program(&["chromedriver"]),
    ) else {
        // Written past the test harness's capture so that the skip shows in the log.
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: the_page_stylizes_a_photo_and_the_camera needs chromium and chromedriver \
             (Debian: apt-get install chromium chromium-driver; scripts/setup.sh does it as root)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let models = match std::env::var_os("FASTSTYLE_SCREENSHOT_MODELS") {
        Some(d) => PathBuf::from(d),
        None => {
            let models = dir.path().join("models");
            std::fs::create_dir_all(models.join("more")).unwrap();
            common::random_model(&models.join("mosaic.safetensors"), 31);
            common::random_model(&models.join("more/candy.safetensors"), 32);
            models
        }
    };
    let (photo, size) = match std::env::var_os("FASTSTYLE_SCREENSHOT_PHOTO") {
        Some(p) => {
            let p = PathBuf::from(p);
            let size = image::image_dimensions(&p).unwrap();
            (p, size)
        }
        None => {
            let p = dir.path().join("photo.png");
            common::write_image(&p, 200, 150, 3);
            (p, (200, 150))
        }
    };
    let server = Server::start(&models, &[]);
    let driver = Driver::start(&chromedriver);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = browser(&driver, &chromium).await;
        client.goto(&format!("{}/", server.url)).await.unwrap();

        // The styles appear with their previews, the first one selected.
        let previews = wait_for(
            &client,
            "the style previews",
            "const imgs = [...document.querySelectorAll('.style img')];
             return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)
                 ? imgs.map(i => [i.naturalWidth, i.naturalHeight]) : null;",
        )
        .await;
        assert!(
            previews
                .as_array()
                .unwrap()
                .iter()
                .all(|p| *p == json!([128, 96])),
            "{previews}"
        );

        // A photo through the file chooser: the result has the photo's size.
        let input = client.find(Locator::Id("file")).await.unwrap();
        input.send_keys(photo.to_str().unwrap()).await.unwrap();
        let result = wait_for(
            &client,
            "the stylized photo",
            "const r = document.getElementById('result');
             return !document.getElementById('download').hidden && r.naturalWidth > 0
                 ? [r.naturalWidth, r.naturalHeight] : null;",
        )
        .await;
        let (w, h) = if size.0.max(size.1) > 1024 {
            let scale = 1024.0 / f64::from(size.0.max(size.1));
            (
                (f64::from(size.0) * scale).round() as u32,
                (f64::from(size.1) * scale).round() as u32,
            )
        } else {
            size
        };
        assert_eq!(result, json!([w, h]));
        let download = client
            .execute(
                "return document.getElementById('download').download",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            download.as_str().unwrap().ends_with(".png")
                || download.as_str().unwrap().ends_with(".jpg"),
            "{download}"
        );
        if let Some(path) = std::env::var_os("FASTSTYLE_SCREENSHOT") {
            // Let the layout settle, then take the picture of the whole window.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let png = client.screenshot().await.unwrap();
            std::fs::write(&path, png).unwrap();
            // And as a phone shows it.
            client.set_window_size(390, 844).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let png = client.screenshot().await.unwrap();
            std::fs::write(Path::new(&path).with_extension("phone.png"), png).unwrap();
            client.set_window_size(1280, 900).await.unwrap();
        }

        // The camera: Chromium's fake device sends frames; the stylized stream shows its rate.
        client
            .find(Locator::Id("tab-live"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .find(Locator::Id("live-toggle"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let frame = wait_for(
            &client,
            "stylized camera frames",
            "const r = document.getElementById('live-result');
             const fps = document.getElementById('fps').textContent;
             return r.naturalWidth > 0 && /[1-9]/.test(fps.split(' ')[0])
                 ? [r.naturalWidth, r.naturalHeight, fps] : null;",
        )
        .await;
        // Frames are sent at most 480 pixels wide (Chromium's fake camera gives 640×480).
        assert_eq!(frame[0], json!(480), "{frame}");
        assert_eq!(frame[1], json!(360), "{frame}");
        eprintln!("live: {}", frame[2]);
        client
            .find(Locator::Id("live-toggle"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client.close().await.unwrap();
    });
}
