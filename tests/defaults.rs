//! Out of the box: without --checkpoint, `infer` uses the starter model in its first style;
//! without --models, `infer --serve` serves the folder that holds it (a random-weight starter
//! written by the test into the working folder's checkpoints/).
mod common;

use common::server::get;
use common::{random_model, random_styles_model, read_rgb, stderr, write_image};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `infer ARGS…` run in `cwd`.
fn infer_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(common::bin("infer"))
        .current_dir(cwd)
        .args(["--device", "cpu"])
        .args(args)
        .output()
        .expect("cannot run infer")
}

#[test]
fn without_checkpoint_infer_uses_the_starter_in_its_first_style() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("checkpoints")).unwrap();
    let starter = d.join("checkpoints/starter.safetensors");
    random_styles_model(&starter, 3, &["alpha", "beta"]);
    random_model(&d.join("other.safetensors"), 4);
    write_image(&d.join("photo.png"), 40, 28, 1);

    let out = infer_in(d, &["photo.png"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("starter.safetensors") && said.contains("`alpha`"),
        "stderr does not name the starter and its first style: {said}"
    );
    let default = read_rgb(&d.join("photo-stylized.png"));
    let starter_arg = starter.display().to_string();
    let explicit = |style: &str, name: &str| {
        let out = infer_in(
            d,
            &[
                "-c",
                &starter_arg,
                "--style",
                style,
                "photo.png",
                "-o",
                name,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        read_rgb(&d.join(name))
    };
    assert_eq!(default, explicit("alpha", "alpha.png"));
    // --style picks another of the starter's styles; --checkpoint another model.
    let out = infer_in(
        d,
        &["--style", "beta", "photo.png", "-o", "beta-default.png"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let beta = read_rgb(&d.join("beta-default.png"));
    assert_eq!(beta, explicit("beta", "beta.png"));
    assert_ne!(beta, default);
    let out = infer_in(
        d,
        &["-c", "other.safetensors", "photo.png", "-o", "other.png"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("starter"), "{}", stderr(&out));
    assert_ne!(read_rgb(&d.join("other.png")), default);
}

#[test]
fn without_models_the_server_serves_the_starters_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("checkpoints/mine")).unwrap();
    random_styles_model(
        &d.join("checkpoints/starter.safetensors"),
        3,
        &["alpha", "beta"],
    );
    random_model(&d.join("checkpoints/mine/mine.safetensors"), 5);
    let mut child = Command::new(common::bin("infer"))
        .current_dir(d)
        .args(["--serve", "127.0.0.1:0", "--device", "cpu"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start infer --serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|u| u.trim_end_matches('/').to_string());
    let models = url.as_ref().map(|u| get(&format!("{u}/v1/models"), None));
    let _ = child.kill();
    let _ = child.wait();
    let models = models
        .unwrap_or_else(|| panic!("the server did not start: {line}"))
        .text();
    for name in ["\"starter\"", "\"alpha\"", "\"beta\"", "\"mine/mine\""] {
        assert!(models.contains(name), "{name} not served: {models}");
    }
}
