//! The `infer` binary end to end, on tiny images with random style models written by the tests.
mod common;

use common::{
    error_lines, random_model, random_model_as, read_rgb, stderr, test_image, write_image,
};
use faststyle::checkpoint;
use image::{GrayImage, ImageEncoder, Rgb, RgbImage, RgbaImage};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use tch::Kind;
use tempfile::TempDir;

macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(OsString::from(&$a)),*] };
}

fn infer(args: Vec<OsString>) -> Output {
    common::run("infer", args)
}

/// A temporary folder holding a random style model.
struct Setup {
    dir: TempDir,
    model: PathBuf,
}

impl Setup {
    fn new(seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.safetensors");
        random_model(&model, seed);
        Self { dir, model }
    }

    fn path(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        p
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("infer was killed by a signal")
}

/// Files under `dir` whose name marks a temporary write.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

fn max_abs_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[test]
fn output_sizes_equal_input_sizes_for_odd_sizes() {
    let s = Setup::new(1);
    let sizes = [(1, 1), (3, 5), (37, 29), (65, 33), (8, 8), (2, 64)];
    for (i, (w, h)) in sizes.iter().enumerate() {
        write_image(&s.path(&format!("in/img{i}.png")), *w, *h, i as u64);
    }
    let out_dir = s.path("out");
    let out = infer(args![
        "--checkpoint",
        s.model,
        s.path("in"),
        "--output",
        out_dir,
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for (i, (w, h)) in sizes.iter().enumerate() {
        let img = read_rgb(&out_dir.join(format!("img{i}.png")));
        assert_eq!(img.dimensions(), (*w, *h), "image {i}");
    }
    assert!(
        stderr(&out).contains("stylized 6 of 6 images"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stylizing_changes_the_image_and_is_deterministic() {
    let s = Setup::new(2);
    let input = s.path("photo.png");
    let original = write_image(&input, 40, 24, 3);
    let a = s.path("a.png");
    let b = s.path("b.png");
    for o in [&a, &b] {
        let out = infer(args!["-c", s.model, input, "-o", o, "--device", "cpu"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let (a, b) = (read_rgb(&a), read_rgb(&b));
    assert_eq!(a, b);
    assert!(
        max_abs_diff(&a, &original) > 20,
        "the network left the image as it was"
    );
    // Not clamped flat: the random model's outputs must spread, or other tests prove little.
    let distinct: std::collections::HashSet<_> = a.pixels().collect();
    assert!(
        distinct.len() > 100,
        "only {} distinct colours",
        distinct.len()
    );
}

#[test]
fn single_file_default_output_is_beside_the_input() {
    let s = Setup::new(3);
    let input = s.path("photos/beach.jpg");
    write_image(&input, 33, 17, 4);
    let out = infer(args!["--checkpoint", s.model, input, "--device", "cpu"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let output = s.path("photos/beach-stylized.jpg");
    let bytes = std::fs::read(&output).expect("default output missing");
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Jpeg
    );
    assert_eq!(read_rgb(&output).dimensions(), (33, 17));
    assert!(out.stdout.is_empty());
    assert!(
        !stderr(&out).contains("stylized 1 of 1"),
        "no summary for one file"
    );
}

#[test]
fn output_extension_picks_the_format_and_jpeg_quality_applies() {
    let s = Setup::new(4);
    let input = s.path("in.png");
    write_image(&input, 48, 40, 5);
    for (name, format) in [
        ("o.webp", image::ImageFormat::WebP),
        ("o.tif", image::ImageFormat::Tiff),
        ("o.bmp", image::ImageFormat::Bmp),
        ("new/dir/o.jpeg", image::ImageFormat::Jpeg),
    ] {
        let o = s.dir.path().join(name);
        let out = infer(args!["-c", s.model, input, "-o", o, "--device", "cpu"]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        let bytes = std::fs::read(&o).unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), format, "{name}");
        assert_eq!(read_rgb(&o).dimensions(), (48, 40));
    }
    let size = |q: &str| {
        let o = s.path(&format!("q{q}.jpg"));
        let out = infer(args![
            "-c",
            s.model,
            input,
            "-o",
            o,
            "--quality",
            q,
            "--device",
            "cpu"
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        std::fs::metadata(&o).unwrap().len()
    };
    assert!(size("20") < size("98"));
    let bad = infer(args![
        "-c",
        s.model,
        input,
        "-o",
        s.path("o.xyz"),
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&bad), 2);
    assert!(
        stderr(&bad).contains("cannot write this format"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn folders_mirror_relative_paths_and_skip_other_files() {
    let s = Setup::new(5);
    write_image(&s.path("in/a.png"), 9, 7, 1);
    write_image(&s.path("in/sub/b.jpg"), 10, 6, 2);
    write_image(&s.path("in/sub/deeper/c.bmp"), 5, 5, 3);
    // ICO as the image crate writes it: PNG inside, which it reads back only as RGBA.
    image::DynamicImage::ImageRgb8(test_image(16, 16, 4, 0, 255))
        .to_rgba8()
        .save(s.path("in/icon.ico"))
        .unwrap();
    std::fs::write(s.path("in/notes.txt"), "not an image").unwrap();
    write_image(&s.path("in/.cache/hidden.png"), 4, 4, 5);
    write_image(&s.path("loose.png"), 3, 3, 6);
    let out_dir = s.path("out");
    let out = infer(args![
        "-c",
        s.model,
        s.path("in"),
        s.path("loose.png"),
        "-o",
        out_dir,
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut written: Vec<String> = walkdir::WalkDir::new(&out_dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(&out_dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    written.sort();
    // ICO cannot be written: PNG instead, under the same name.
    assert_eq!(
        written,
        [
            "a.png",
            "icon.png",
            "loose.png",
            "sub/b.jpg",
            "sub/deeper/c.bmp"
        ]
    );
    let b = std::fs::read(out_dir.join("sub/b.jpg")).unwrap();
    assert_eq!(image::guess_format(&b).unwrap(), image::ImageFormat::Jpeg);
    assert_eq!(
        read_rgb(&out_dir.join("sub/deeper/c.bmp")).dimensions(),
        (5, 5)
    );
    assert!(
        stderr(&out).contains("stylized 5 of 5 images"),
        "{}",
        stderr(&out)
    );

    // A second run into an output folder inside the input folder does not pick up its results.
    let inner = s.path("in/stylized");
    let first = infer(args![
        "-c",
        s.model,
        s.path("in"),
        "-o",
        inner,
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let second = infer(args![
        "-c",
        s.model,
        s.path("in"),
        "-o",
        inner,
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert!(
        stderr(&second).contains("stylized 4 of 4 images"),
        "{}",
        stderr(&second)
    );
    assert!(!inner.join("stylized").exists());
}

#[test]
fn default_output_folder_is_stylized_in_the_working_directory() {
    let s = Setup::new(6);
    write_image(&s.path("work/in/a.png"), 6, 6, 1);
    write_image(&s.path("work/in/b.png"), 7, 6, 2);
    let out = std::process::Command::new(common::bin("infer"))
        .current_dir(s.path("work"))
        .args(args!["-c", s.model, "in", "--device", "cpu"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        read_rgb(&s.path("work/stylized/a.png")).dimensions(),
        (6, 6)
    );
    assert_eq!(
        read_rgb(&s.path("work/stylized/b.png")).dimensions(),
        (7, 6)
    );
}

/// Runs infer on one bad checkpoint; returns its single stderr line.
fn checkpoint_error(s: &Setup, model: &Path) -> String {
    let input = s.path("in.png");
    write_image(&input, 8, 8, 1);
    let output = s.path("never.png");
    let out = infer(args!["-c", model, input, "-o", output, "--device", "cpu"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(&model.display().to_string()),
        "names the file: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(!output.exists());
    err
}

#[test]
fn checkpoint_errors_are_one_line_naming_file_and_tensor() {
    let s = Setup::new(7);
    let text = s.path("text.safetensors");
    std::fs::write(&text, "this is not a safetensors file at all").unwrap();
    assert!(checkpoint_error(&s, &text).contains("not a safetensors file"));

    let missing_file = s.path("absent.safetensors");
    checkpoint_error(&s, &missing_file);

    let bytes = std::fs::read(&s.model).unwrap();
    let truncated = s.path("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint_error(&s, &truncated);
    // Names the first tensor whose data the cut-short file lacks.
    assert!(err.contains("truncated: tensor `"), "{err}");

    let file = checkpoint::read(&s.model).unwrap();
    let mut tensors: Vec<(String, tch::Tensor)> = file
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));

    let without: Vec<_> = tensors
        .iter()
        .filter(|(n, _)| n != "res3.in2.bias")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let missing = s.path("missing.safetensors");
    checkpoint::write(&missing, &without, &file.metadata, Kind::Float).unwrap();
    let err = checkpoint_error(&s, &missing);
    assert!(err.contains("res3.in2.bias"), "names the tensor: {err}");

    let reshaped: Vec<_> = tensors
        .iter()
        .map(|(n, t)| {
            let t = if n == "deconv2.conv2d.weight" {
                t.narrow(1, 0, 64).narrow(0, 0, 16).contiguous()
            } else {
                t.shallow_clone()
            };
            (n.clone(), t)
        })
        .collect();
    let wrong = s.path("wrong.safetensors");
    checkpoint::write(&wrong, &reshaped, &file.metadata, Kind::Float).unwrap();
    let err = checkpoint_error(&s, &wrong);
    assert!(
        err.contains("deconv2.conv2d.weight"),
        "names the tensor: {err}"
    );
}

#[test]
fn missing_input_is_reported_and_the_rest_written() {
    let s = Setup::new(8);
    let good = s.path("good.png");
    write_image(&good, 12, 10, 1);
    let missing = s.path("missing.png");
    let out_dir = s.path("out");
    let out = infer(args![
        "-c", s.model, good, missing, "-o", out_dir, "--device", "cpu"
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&missing.display().to_string()),
        "{errors:?}"
    );
    assert_eq!(read_rgb(&out_dir.join("good.png")).dimensions(), (12, 10));
    assert!(
        stderr(&out).contains("stylized 1 of 2 images"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn broken_files_are_errors_and_the_others_are_written() {
    let s = Setup::new(9);
    write_image(&s.path("in/a.png"), 20, 16, 1);
    write_image(&s.path("in/c.png"), 21, 13, 3);
    // A JPEG cut in the middle: zune-jpeg alone would fill the rest with grey.
    let full = s.path("full.jpg");
    write_image(&full, 64, 48, 2);
    let jpeg = std::fs::read(&full).unwrap();
    std::fs::write(s.path("in/b_truncated.jpg"), &jpeg[..jpeg.len() * 2 / 3]).unwrap();
    // A PNG cut in its image data.
    let png_full = s.path("full.png");
    write_image(&png_full, 64, 48, 4);
    let png = std::fs::read(&png_full).unwrap();
    std::fs::write(s.path("in/d_truncated.png"), &png[..png.len() / 2]).unwrap();
    // Text under an image name.
    std::fs::write(s.path("in/e_text.jpg"), "hello, I am not a JPEG").unwrap();
    std::fs::write(s.path("in/f_empty.png"), "").unwrap();

    let out_dir = s.path("out");
    let out = infer(args![
        "-c",
        s.model,
        s.path("in"),
        "-o",
        out_dir,
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 4, "{errors:?}");
    let line = |name: &str| {
        errors
            .iter()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no error for {name}: {errors:?}"))
            .clone()
    };
    assert!(line("b_truncated.jpg").contains("truncated"));
    assert!(!line("d_truncated.png").is_empty());
    assert!(line("e_text.jpg").contains("not an image"));
    assert!(line("f_empty.png").contains("empty"));
    assert!(!stderr(&out).contains("panicked"));
    assert_eq!(read_rgb(&out_dir.join("a.png")).dimensions(), (20, 16));
    assert_eq!(read_rgb(&out_dir.join("c.png")).dimensions(), (21, 13));
    for broken in [
        "b_truncated.jpg",
        "d_truncated.png",
        "e_text.jpg",
        "f_empty.png",
    ] {
        assert!(!out_dir.join(broken).exists(), "{broken} written");
    }
    assert!(temp_files(&out_dir).is_empty());
    assert!(
        stderr(&out).contains("stylized 2 of 6 images"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_input_is_never_overwritten() {
    let s = Setup::new(10);
    let input = s.path("in/a.png");
    write_image(&input, 10, 10, 1);
    write_image(&s.path("in/b.png"), 10, 10, 2);
    let before = std::fs::read(&input).unwrap();

    let same = infer(args!["-c", s.model, input, "-o", input, "--device", "cpu"]);
    assert_eq!(code(&same), 1, "{}", stderr(&same));
    let errors = error_lines(&same);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("refusing to overwrite"), "{errors:?}");

    // The same file by another spelling of its path.
    let other_spelling = s.dir.path().join("in/../in/./a.png");
    let same = infer(args![
        "-c",
        s.model,
        input,
        "-o",
        other_spelling,
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&same), 1, "{}", stderr(&same));

    let folder = infer(args![
        "-c",
        s.model,
        s.path("in"),
        "-o",
        s.path("in"),
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&folder), 1, "{}", stderr(&folder));
    assert_eq!(error_lines(&folder).len(), 2, "{}", stderr(&folder));
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert!(
        stderr(&folder).contains("stylized 0 of 2 images"),
        "{}",
        stderr(&folder)
    );
}

#[test]
fn two_inputs_never_write_the_same_output() {
    let s = Setup::new(11);
    let x = s.path("x/a.png");
    let y = s.path("y/a.png");
    write_image(&x, 8, 8, 1);
    write_image(&y, 9, 9, 2);
    let out_dir = s.path("out");
    let out = infer(args!["-c", s.model, x, y, "-o", out_dir, "--device", "cpu"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(&y.display().to_string()), "{errors:?}");
    // The first one named wins.
    assert_eq!(read_rgb(&out_dir.join("a.png")).dimensions(), (8, 8));

    // The same file named twice is simply done once.
    let twice = infer(args![
        "-c",
        s.model,
        x,
        s.path("x"),
        "-o",
        s.path("out2"),
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&twice), 0, "{}", stderr(&twice));
}

#[test]
fn fp16_on_cpu_is_refused() {
    // bf16 on the CPU depends on the CPU: tests/bf16_cpu.rs covers it.
    let s = Setup::new(12);
    let input = s.path("a.png");
    write_image(&input, 8, 8, 1);
    let o = s.path("fp16.png");
    let out = infer(args![
        "-c",
        s.model,
        input,
        "-o",
        o,
        "--device",
        "cpu",
        "--precision",
        "fp16"
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("CUDA"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(!o.exists());
}

#[test]
fn bad_options_exit_with_usage_errors() {
    let s = Setup::new(13);
    let input = s.path("a.png");
    write_image(&input, 8, 8, 1);
    for bad in [
        args!["-c", s.model, input, "--strength", "1.5"],
        args!["-c", s.model, input, "--strength", "-0.1"],
        args!["-c", s.model, input, "--max-size", "0"],
        args!["-c", s.model, input, "--quality", "0"],
        args!["-c", s.model, input, "--device", "tpu"],
        args!["-c", s.model, input, "--precision", "fp8"],
        args!["-c", s.model],
        // (`infer PHOTO` alone is no error: the repository's starter model is found.)
    ] {
        let out = infer(bad.clone());
        assert_eq!(code(&out), 2, "{bad:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
    let mut files = std::fs::read_dir(s.dir.path()).unwrap().count();
    files -= 2; // model and input
    assert_eq!(files, 0, "nothing written");
}

#[test]
fn strength_zero_gives_the_input_back_and_strength_blends() {
    let s = Setup::new(14);
    let input = s.path("a.png");
    let original = write_image(&input, 37, 29, 1);
    let run = |strength: &str| {
        let o = s.path(&format!("s{strength}.png"));
        let out = infer(args![
            "-c",
            s.model,
            input,
            "-o",
            o,
            "--strength",
            strength,
            "--device",
            "cpu"
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        read_rgb(&o)
    };
    assert_eq!(run("0"), original);
    let full = run("1");
    let half = run("0.5");
    for ((h, f), o) in half
        .as_raw()
        .iter()
        .zip(full.as_raw())
        .zip(original.as_raw())
    {
        let expected = (f32::from(*f) + f32::from(*o)) / 2.0;
        assert!(
            (f32::from(*h) - expected).abs() <= 0.5 + 1e-3,
            "{h} vs {expected}"
        );
    }
}

#[test]
fn preserve_color_keeps_the_input_chroma() {
    let s = Setup::new(15);
    let input = s.path("a.png");
    // Moderate colours, so that luminance changes rarely push a channel out of 0…255.
    let original = test_image(48, 40, 2, 70, 190);
    original.save(&input).unwrap();
    let plain = s.path("plain.png");
    let kept = s.path("kept.png");
    let out = infer(args!["-c", s.model, input, "-o", plain, "--device", "cpu"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = infer(args![
        "-c",
        s.model,
        input,
        "-o",
        kept,
        "--preserve-color",
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (plain, kept) = (read_rgb(&plain), read_rgb(&kept));
    let mut compared = 0;
    let mut luma_moved = 0;
    for (x, y, p) in kept.enumerate_pixels() {
        if p.0.iter().any(|&c| c == 0 || c == 255) {
            continue; // clipped: chroma cannot be kept there
        }
        compared += 1;
        let [yk, cbk, crk] = common::ycbcr(p);
        let [yo, cbo, cro] = common::ycbcr(original.get_pixel(x, y));
        let [ys, _, _] = common::ycbcr(plain.get_pixel(x, y));
        // Rounding each of R, G, B moves Cb or Cr by at most 0.5.
        assert!(
            (cbk - cbo).abs() <= 0.5 + 1e-6,
            "Cb at {x},{y}: {cbk} vs {cbo}"
        );
        assert!(
            (crk - cro).abs() <= 0.5 + 1e-6,
            "Cr at {x},{y}: {crk} vs {cro}"
        );
        // Luminance is the stylized image's (each rounded twice: within 1).
        assert!((yk - ys).abs() <= 1.0 + 1e-6, "Y at {x},{y}: {yk} vs {ys}");
        if (yk - yo).abs() > 5.0 {
            luma_moved += 1;
        }
    }
    let n = kept.width() * kept.height();
    assert!(
        compared * 10 >= n * 8,
        "only {compared} of {n} pixels unclipped"
    );
    assert!(
        luma_moved * 2 > compared,
        "the stylized luminance should differ from the input's"
    );
}

/// A big-endian EXIF block (TIFF header and one IFD entry) holding an orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut v = b"MM\0\x2a\0\0\0\x08".to_vec();
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&0x0112u16.to_be_bytes());
    v.extend_from_slice(&3u16.to_be_bytes());
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&value.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    v
}

#[test]
fn exif_orientation_makes_the_output_upright() {
    let s = Setup::new(16);
    // 40×24 stored; a bright block at the stored top-left, the rest dark.
    let stored = RgbImage::from_fn(40, 24, |x, y| {
        if x < 16 && y < 8 {
            Rgb([240, 240, 240])
        } else {
            Rgb([20, 20, 20])
        }
    });
    let input = s.path("phone.jpg");
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    encoder.set_exif_metadata(exif_orientation(6)).unwrap(); // rotate 90° clockwise to view
    encoder
        .write_image(stored.as_raw(), 40, 24, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(&input, &bytes).unwrap();
    let o = s.path("upright.png");
    let out = infer(args![
        "-c",
        s.model,
        input,
        "-o",
        o,
        "--strength",
        "0",
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let upright = read_rgb(&o);
    assert_eq!(upright.dimensions(), (24, 40));
    // Turned clockwise, the stored top-left block lands at the top right.
    assert!(
        upright.get_pixel(20, 3)[0] > 200,
        "top right should be bright"
    );
    assert!(upright.get_pixel(3, 3)[0] < 60, "top left should be dark");
    assert!(
        upright.get_pixel(20, 36)[0] < 60,
        "bottom right should be dark"
    );
}

#[test]
fn alpha_is_carried_through_to_formats_that_hold_it() {
    let s = Setup::new(17);
    let rgb = test_image(19, 11, 3, 0, 255);
    let alpha = GrayImage::from_fn(19, 11, |x, y| {
        image::Luma([((x * 13 + y * 29) % 256) as u8])
    });
    let rgba = RgbaImage::from_fn(19, 11, |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        image::Rgba([r, g, b, alpha.get_pixel(x, y)[0]])
    });
    let input = s.path("logo.png");
    rgba.save(&input).unwrap();
    for (name, keeps) in [
        ("o.png", true),
        ("o.webp", true),
        ("o.tiff", true),
        ("o.jpg", false),
    ] {
        let o = s.path(name);
        let out = infer(args!["-c", s.model, input, "-o", o, "--device", "cpu"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let back = image::open(&o).unwrap();
        assert_eq!(back.color().has_alpha(), keeps, "{name}");
        if keeps {
            let a: Vec<u8> = back.to_rgba8().pixels().map(|p| p[3]).collect();
            assert_eq!(a, alpha.as_raw().clone(), "{name}");
        }
    }
}

#[test]
fn max_size_scales_the_longer_side() {
    let s = Setup::new(18);
    let input = s.path("wide.png");
    write_image(&input, 65, 33, 1);
    let o = s.path("small.png");
    let out = infer(args![
        "-c",
        s.model,
        input,
        "-o",
        o,
        "--max-size",
        "32",
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(read_rgb(&o).dimensions(), (32, 16));
    let o = s.path("same.png");
    let out = infer(args![
        "-c",
        s.model,
        input,
        "-o",
        o,
        "--max-size",
        "100",
        "--device",
        "cpu"
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(read_rgb(&o).dimensions(), (65, 33));
}

#[test]
fn float16_checkpoint_gives_nearly_the_same_output() {
    let s = Setup::new(19);
    let half_model = s.path("half.safetensors");
    random_model_as(&half_model, 19, Kind::Half);
    assert!(
        std::fs::metadata(&half_model).unwrap().len()
            < std::fs::metadata(&s.model).unwrap().len() * 6 / 10
    );
    let input = s.path("a.png");
    write_image(&input, 32, 24, 1);
    let run = |model: &Path, name: &str| {
        let o = s.path(name);
        let out = infer(args!["-c", model, input, "-o", o, "--device", "cpu"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        read_rgb(&o)
    };
    let full = run(&s.model, "f32.png");
    let half = run(&half_model, "f16.png");
    let diffs: Vec<u32> = full
        .as_raw()
        .iter()
        .zip(half.as_raw())
        .map(|(a, b)| u32::from(a.abs_diff(*b)))
        .collect();
    let max = diffs.iter().max().copied().unwrap_or(0);
    let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
    assert!(
        max <= 4 && mean < 0.5,
        "float16 weights: max diff {max}, mean {mean}"
    );
}

#[test]
fn interrupt_stops_cleanly() {
    let s = Setup::new(20);
    for i in 0..60 {
        write_image(&s.path(&format!("in/{i:03}.png")), 96, 96, i);
    }
    let out_dir = s.path("out");
    let child = std::process::Command::new(common::bin("infer"))
        .args(args![
            "-c",
            s.model,
            s.path("in"),
            "-o",
            out_dir,
            "--device",
            "cpu"
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first output exists.
    let start = std::time::Instant::now();
    while !(out_dir.exists() && std::fs::read_dir(&out_dir).unwrap().next().is_some()) {
        assert!(start.elapsed().as_secs() < 120, "no output appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    let written: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(temp_files(&out_dir).is_empty(), "{written:?}");
    for path in &written {
        assert_eq!(read_rgb(path).dimensions(), (96, 96), "{}", path.display());
    }
    if written.len() < 60 {
        assert_eq!(code(&out), 130, "{err}");
        assert!(
            err.contains(&format!(
                "interrupted: stylized {} of 60 images",
                written.len()
            )),
            "{err}"
        );
    } else {
        eprintln!("note: every image was done before the interrupt arrived");
    }
}
