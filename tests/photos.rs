//! Photos as photographers have them, through the real `infer`: colour profiles honoured
//! (Adobe RGB JPEG, Display P3 PNG), EXIF and XMP kept upright or stripped, 16 bits kept,
//! HEIC and AVIF read with their orientation, decompression bombs refused from the header,
//! and the server stripping metadata unless asked to keep it. Every file is made here.
mod common;

use common::server::{post, Server};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader, Rgb, RgbImage};
use moxcms::{ColorProfile, Layout, TransformOptions};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian's Adobe RGB (1998) compatible profile (icc-profiles-free), else one built by the
/// colour engine with the same primaries, white point and gamma.
fn adobe_rgb_icc() -> Vec<u8> {
    std::fs::read("/usr/share/color/icc/compatibleWithAdobeRGB1998.icc")
        .unwrap_or_else(|_| ColorProfile::new_adobe_rgb().encode().unwrap())
}

fn display_p3_icc() -> Vec<u8> {
    ColorProfile::new_display_p3().encode().unwrap()
}

/// A photo with saturated corners (outside sRGB in the wide spaces) and smooth ramps.
fn wide_photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x < 6 && y < 6 {
            Rgb([0, 255, 0])
        } else if x >= w - 6 && y < 6 {
            Rgb([255, 0, 40])
        } else {
            Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                (255 - (x + y) * 127 / (w + h)) as u8,
            ])
        }
    })
}

fn write_jpeg(path: &Path, rgb: &RgbImage, icc: Option<&[u8]>, exif: Option<Vec<u8>>) {
    let mut out = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut out, 100);
    if let Some(icc) = icc {
        enc.set_icc_profile(icc.to_vec()).unwrap();
    }
    if let Some(exif) = exif {
        enc.set_exif_metadata(exif).unwrap();
    }
    enc.write_image(
        rgb.as_raw(),
        rgb.width(),
        rgb.height(),
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    std::fs::write(path, out).unwrap();
}

fn write_png(path: &Path, rgb: &RgbImage, icc: Option<&[u8]>) {
    let mut out = Vec::new();
    let mut enc = PngEncoder::new(&mut out);
    if let Some(icc) = icc {
        enc.set_icc_profile(icc.to_vec()).unwrap();
    }
    enc.write_image(
        rgb.as_raw(),
        rgb.width(),
        rgb.height(),
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    std::fs::write(path, out).unwrap();
}

/// A file's pixels (as the `image` crate decodes them) and its ICC profile.
fn read_tagged(path: &Path) -> (DynamicImage, Option<Vec<u8>>) {
    let mut decoder = ImageReader::open(path)
        .unwrap()
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    let icc = decoder.icc_profile().unwrap();
    (DynamicImage::from_decoder(decoder).unwrap(), icc)
}

/// RGB at 8 bits through its profile (none: sRGB) into BT.2020, a space that holds Adobe RGB
/// and Display P3, as floats 0…1: the colours a colour-managed viewer shows.
fn appearance(rgb: &RgbImage, icc: Option<&[u8]>) -> Vec<f32> {
    let src = icc.map_or_else(ColorProfile::new_srgb, |i| {
        ColorProfile::new_from_slice(i).unwrap()
    });
    let t = src
        .create_transform_f32(
            Layout::Rgb,
            &ColorProfile::new_bt2020(),
            Layout::Rgb,
            TransformOptions::default(),
        )
        .unwrap();
    let input: Vec<f32> = rgb.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect();
    let mut out = vec![0.0; input.len()];
    t.transform(&input, &mut out).unwrap();
    out
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn infer(args: &[&std::ffi::OsStr]) -> Output {
    common::run("infer", args)
}

fn stylize(model: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "-c".as_ref(),
        model.as_os_str(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        "--device".as_ref(),
        "cpu".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let out = infer(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    out
}

/// The project's Python, when it imports `modules`; otherwise a visible skip note.
fn python_with(modules: &str, what: &str) -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        let _ = writeln!(
            std::io::stderr(),
            "skipped {what}: {} cannot import {modules} (pip install -r scripts/requirements.txt)",
            py.display()
        );
        return None;
    }
    Some(py)
}

fn python(py: &Path, script: &str, args: &[&Path]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The largest difference (of 255) between two tagged files shown in sRGB by Pillow's
/// colour management (LittleCMS, another engine than ours).
const PILLOW_SRGB_DIFF: &str = r#"
import io, sys
import numpy as np
from PIL import Image, ImageCms
def shown(path):
    im = Image.open(path).convert("RGB")
    icc = im.info.get("icc_profile")
    if icc:
        im = ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                       ImageCms.createProfile("sRGB"), outputMode="RGB")
    return np.asarray(im, dtype=np.int16)
print(int(np.abs(shown(sys.argv[1]) - shown(sys.argv[2])).max()))
"#;

#[test]
fn tagged_photos_at_strength_0_look_exactly_like_their_input() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 1);
    let photo = wide_photo(61, 43);
    let cases = [("adobe.jpg", adobe_rgb_icc()), ("p3.png", display_p3_icc())];
    for (name, icc) in cases {
        let input = dir.path().join(name);
        if name.ends_with(".jpg") {
            write_jpeg(&input, &photo, Some(&icc), None);
        } else {
            write_png(&input, &photo, Some(&icc));
        }
        // What a viewer shows of the input: its decoded pixels through its profile.
        let (decoded, in_icc) = read_tagged(&input);
        let decoded = decoded.to_rgb8();
        let shown_in = appearance(&decoded, in_icc.as_deref());
        for out_name in ["out.png", "out.jpg"] {
            let output = dir.path().join(format!("{name}-{out_name}"));
            stylize(&model, &input, &output, &["--strength", "0"]);
            let (out, out_icc) = read_tagged(&output);
            assert!(
                out_icc.is_some(),
                "{name} → {out_name}: the output carries no profile"
            );
            if out_name == "out.png" {
                let d = worst(&shown_in, &appearance(&out.to_rgb8(), out_icc.as_deref()));
                assert!(
                    d <= 1.0 / 255.0,
                    "{name}: {:.2}/255 from the input",
                    d * 255.0
                );
                // A second opinion from another colour engine, shown on an sRGB screen.
                if let Some(py) = python_with("numpy, PIL.ImageCms", "the LittleCMS check") {
                    let reference = dir.path().join(format!("{name}-reference.png"));
                    write_png(&reference, &decoded, in_icc.as_deref());
                    let d: u32 = python(&py, PILLOW_SRGB_DIFF, &[&reference, &output])
                        .parse()
                        .unwrap();
                    assert!(d <= 1, "{name}: LittleCMS shows {d}/255 of difference");
                }
            } else {
                // JPEG's own loss aside (its chroma subsampling blurs the saturated
                // corners' edges), the colours are the input's, not reinterpreted: on
                // average within JPEG's loss, and far from the input's values taken as sRGB.
                assert_eq!(
                    out_icc.as_deref(),
                    in_icc.as_deref(),
                    "{name}: not its profile"
                );
                let out = appearance(&out.to_rgb8(), out_icc.as_deref());
                let mean = |a: &[f32], b: &[f32]| {
                    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
                };
                let d = mean(&shown_in, &out);
                let untagged = mean(&shown_in, &appearance(&decoded, None));
                eprintln!(
                    "{name} as JPEG: mean {:.2}/255, if untagged {:.2}/255",
                    d * 255.0,
                    untagged * 255.0
                );
                assert!(
                    d <= 1.5 / 255.0,
                    "{name} as JPEG: mean {:.2}/255",
                    d * 255.0
                );
                assert!(
                    untagged > 4.0 * d,
                    "{name}: the test cannot tell the profile"
                );
            }
        }
    }
}

#[test]
fn the_network_sees_srgb_and_blends_in_the_photos_own_values() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 2);
    let p3 = display_p3_icc();
    let p3_parsed = ColorProfile::new_from_slice(&p3).unwrap();
    let transform = |from: &ColorProfile, to: &ColorProfile, raw: &[u8]| {
        let t = from
            .create_transform_8bit(Layout::Rgb, to, Layout::Rgb, TransformOptions::default())
            .unwrap();
        let mut out = vec![0u8; raw.len()];
        t.transform(raw, &mut out).unwrap();
        RgbImage::from_raw(48, 40, out).unwrap()
    };
    // A Display P3 photo, and what the network must see of it: its sRGB conversion, written
    // untagged (the photo is in sRGB's gamut, so nothing is clipped).
    let in_gamut = common::test_image(48, 40, 5, 30, 220);
    let p3_photo = transform(&ColorProfile::new_srgb(), &p3_parsed, in_gamut.as_raw());
    let srgb_photo = transform(&p3_parsed, &ColorProfile::new_srgb(), p3_photo.as_raw());
    let (in_p3, in_srgb) = (dir.path().join("p3.png"), dir.path().join("srgb.png"));
    write_png(&in_p3, &p3_photo, Some(&p3));
    write_png(&in_srgb, &srgb_photo, None);
    let (out_p3, out_srgb) = (
        dir.path().join("p3-out.png"),
        dir.path().join("srgb-out.png"),
    );
    stylize(&model, &in_p3, &out_p3, &[]);
    stylize(&model, &in_srgb, &out_srgb, &[]);
    let (a, a_icc) = read_tagged(&out_p3);
    let (b, b_icc) = read_tagged(&out_srgb);
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(
        a_icc.as_deref(),
        Some(&p3[..]),
        "tagged with the input's profile"
    );
    assert!(
        b_icc.is_none(),
        "an untagged (sRGB) input gives an untagged output"
    );
    // Under colour management the two results agree (the rounding of one 8-bit conversion,
    // sRGB → P3, of the same network output)…
    let d = worst(&appearance(&a, a_icc.as_deref()), &appearance(&b, None));
    assert!(
        d <= 1.5 / 255.0,
        "{:.2}/255 apart under colour management",
        d * 255.0
    );
    // …while their stored values differ: the result was converted to P3.
    let raw = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y));
    assert!(raw.max().unwrap() >= 4, "the P3 result was not converted");

    // --strength 0.5 blends the P3 result with the photo's own P3 values.
    let half = dir.path().join("p3-half.png");
    stylize(&model, &in_p3, &half, &["--strength", "0.5"]);
    let (h, _) = read_tagged(&half);
    for ((&s, &o), &got) in a
        .as_raw()
        .iter()
        .zip(p3_photo.as_raw())
        .zip(h.to_rgb8().as_raw())
    {
        let want = (f32::from(s) + f32::from(o)) / 2.0;
        assert!(
            (f32::from(got) - want).abs() <= 1.0,
            "blend {got} for {s}, {o}"
        );
    }
}

/// A big-endian TIFF directory's entries (tag, type, count, value bytes) laid out at
/// `start`, values over four bytes after the directory; `next` is the following directory.
fn ifd(start: u32, entries: &[(u16, u16, u32, Vec<u8>)], next: u32) -> Vec<u8> {
    let mut head = (entries.len() as u16).to_be_bytes().to_vec();
    let mut data = Vec::new();
    let data_at = start + 2 + 12 * entries.len() as u32 + 4;
    for (tag, kind, count, value) in entries {
        head.extend_from_slice(&tag.to_be_bytes());
        head.extend_from_slice(&kind.to_be_bytes());
        head.extend_from_slice(&count.to_be_bytes());
        if value.len() <= 4 {
            let mut v = value.clone();
            v.resize(4, 0);
            head.extend_from_slice(&v);
        } else {
            head.extend_from_slice(&(data_at + data.len() as u32).to_be_bytes());
            data.extend_from_slice(value);
            if data.len() % 2 == 1 {
                data.push(0);
            }
        }
    }
    head.extend_from_slice(&next.to_be_bytes());
    head.extend_from_slice(&data);
    head
}

fn ascii(s: &str) -> (u16, u32, Vec<u8>) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    (2, v.len() as u32, v)
}

fn rationals(values: &[(u32, u32)]) -> (u16, u32, Vec<u8>) {
    let v = values
        .iter()
        .flat_map(|(n, d)| [n.to_be_bytes(), d.to_be_bytes()].concat())
        .collect();
    (5, values.len() as u32, v)
}

/// EXIF as a camera writes it: make, model, orientation 6 (turn 90° clockwise), the date
/// taken and a GPS position.
fn camera_exif() -> Vec<u8> {
    let e = |tag: u16, (kind, count, value): (u16, u32, Vec<u8>)| (tag, kind, count, value);
    let ifd0 = |exif_at: u32, gps_at: u32| {
        ifd(
            8,
            &[
                e(0x010F, ascii("Faststyle Optics")),
                e(0x0110, ascii("Model F-1")),
                e(0x0112, (3, 1, 6u16.to_be_bytes().to_vec())),
                e(0x8769, (4, 1, exif_at.to_be_bytes().to_vec())),
                e(0x8825, (4, 1, gps_at.to_be_bytes().to_vec())),
            ],
            0,
        )
    };
    let exif_at = 8 + ifd0(0, 0).len() as u32;
    let exif_ifd = ifd(exif_at, &[e(0x9003, ascii("2024:05:06 07:08:09"))], 0);
    let gps_at = exif_at + exif_ifd.len() as u32;
    let gps = ifd(
        gps_at,
        &[
            e(0x0001, ascii("N")),
            e(0x0002, rationals(&[(48, 1), (51, 1), (2400, 100)])),
            e(0x0003, ascii("E")),
            e(0x0004, rationals(&[(2, 1), (21, 1), (300, 100)])),
        ],
        0,
    );
    let mut out = b"MM\0*\0\0\0\x08".to_vec();
    out.extend(ifd0(exif_at, gps_at));
    out.extend(exif_ifd);
    out.extend(gps);
    out
}

const XMP: &str = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" tiff:Orientation="6"><dc:creator><rdf:Seq><rdf:li>Ada Lovelace</rdf:li></rdf:Seq></dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"#;

/// A JPEG with `xmp` in an APP1 segment right after the start of image.
fn with_xmp(jpeg: &[u8], xmp: &str) -> Vec<u8> {
    let sig = b"http://ns.adobe.com/xap/1.0/\0";
    let len = (2 + sig.len() + xmp.len()) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(sig);
    out.extend_from_slice(xmp.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn exif_of(path: &Path) -> Option<exif::Exif> {
    let file = std::fs::File::open(path).unwrap();
    exif::Reader::new()
        .read_from_container(&mut std::io::BufReader::new(file))
        .ok()
}

fn field(exif: &exif::Exif, tag: exif::Tag) -> String {
    exif.get_field(tag, exif::In::PRIMARY)
        .map(|f| f.display_value().to_string())
        .unwrap_or_default()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn camera_metadata_is_kept_upright_and_stripped_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 3);
    let input = dir.path().join("camera.jpg");
    write_jpeg(
        &input,
        &common::test_image(40, 24, 1, 0, 255),
        None,
        Some(camera_exif()),
    );
    std::fs::write(&input, with_xmp(&std::fs::read(&input).unwrap(), XMP)).unwrap();
    let before = exif_of(&input).expect("the test's EXIF reads back");
    assert_eq!(
        field(&before, exif::Tag::Orientation),
        "row 0 at right and column 0 at top"
    );

    for name in ["kept.jpg", "kept.png", "kept.webp"] {
        let output = dir.path().join(name);
        stylize(&model, &input, &output, &[]);
        let exif = exif_of(&output).unwrap_or_else(|| panic!("{name}: no EXIF"));
        assert_eq!(
            field(&exif, exif::Tag::Make),
            "\"Faststyle Optics\"",
            "{name}"
        );
        assert_eq!(field(&exif, exif::Tag::Model), "\"Model F-1\"", "{name}");
        assert_eq!(
            field(&exif, exif::Tag::DateTimeOriginal),
            "2024-05-06 07:08:09",
            "{name}"
        );
        assert!(
            field(&exif, exif::Tag::GPSLatitude).starts_with("48 deg 51 min 24"),
            "{name}"
        );
        assert_eq!(field(&exif, exif::Tag::GPSLongitudeRef), "E", "{name}");
        // Turned upright, and marked so: a viewer must not turn it again.
        assert_eq!(
            field(&exif, exif::Tag::Orientation),
            "row 0 at top and column 0 at left"
        );
        assert_eq!(
            image::image_dimensions(&output).unwrap(),
            (24, 40),
            "{name}"
        );
        let bytes = std::fs::read(&output).unwrap();
        assert!(contains(&bytes, "Ada Lovelace"), "{name}: XMP lost");
        assert!(
            contains(&bytes, "tiff:Orientation=\"1\""),
            "{name}: XMP orientation"
        );
    }
    let stripped = dir.path().join("stripped.jpg");
    stylize(&model, &input, &stripped, &["--strip-metadata"]);
    assert!(exif_of(&stripped).is_none(), "--strip-metadata left EXIF");
    let bytes = std::fs::read(&stripped).unwrap();
    assert!(!contains(&bytes, "Ada Lovelace") && !contains(&bytes, "Faststyle Optics"));
    assert_eq!(image::image_dimensions(&stripped).unwrap(), (24, 40));
}

/// A 16-bit RGB image with values that 8 bits cannot hold.
fn deep_photo(w: u32, h: u32) -> faststyle::imageio::Rgb16Image {
    faststyle::imageio::Rgb16Image::from_fn(w, h, |x, y| {
        Rgb([
            (x * 65535 / w) as u16 | 3,
            (y * 65535 / h) as u16 | 1,
            (((x * 7 + y * 13) * 331) % 65536) as u16,
        ])
    })
}

#[test]
fn sixteen_bit_png_and_tiff_stay_sixteen_bits() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 4);
    let photo = deep_photo(37, 22);
    for ext in ["png", "tif"] {
        let input = dir.path().join(format!("deep.{ext}"));
        DynamicImage::ImageRgb16(photo.clone())
            .save(&input)
            .unwrap();
        let same = dir.path().join(format!("same.{ext}"));
        stylize(&model, &input, &same, &["--strength", "0"]);
        let back = image::open(&same).unwrap();
        let DynamicImage::ImageRgb16(back) = back else {
            panic!("{ext}: not 16-bit RGB: {:?}", back.color());
        };
        assert_eq!(back, photo, "{ext}: --strength 0 changed the 16-bit values");

        let styled = dir.path().join(format!("styled.{ext}"));
        stylize(&model, &input, &styled, &[]);
        let DynamicImage::ImageRgb16(styled) = image::open(&styled).unwrap() else {
            panic!("{ext}: the stylized output is not 16-bit");
        };
        // Quantised to 16 bits: not just 8-bit values widened (multiples of 257).
        let fine = styled.as_raw().iter().filter(|&&v| v % 257 != 0).count();
        assert!(
            fine * 2 > styled.as_raw().len(),
            "{ext}: only 8 bits of precision"
        );
    }
    // 8-bit stays 8-bit.
    let input = dir.path().join("eight.png");
    common::write_image(&input, 20, 10, 1);
    let output = dir.path().join("eight-out.png");
    stylize(&model, &input, &output, &[]);
    assert!(matches!(
        image::open(&output).unwrap(),
        DynamicImage::ImageRgb8(_)
    ));
}

#[test]
fn the_server_answers_a_sixteen_bit_photo_in_sixteen_bits_as_infer_does() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    common::random_model(&models.join("a.safetensors"), 4);
    let input = dir.path().join("deep.png");
    DynamicImage::ImageRgb16(deep_photo(37, 22))
        .save(&input)
        .unwrap();
    let server = Server::start(&models, &[]);
    let answer = post(
        &format!("{}/v1/stylize?model=a", server.url),
        &std::fs::read(&input).unwrap(),
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let DynamicImage::ImageRgb16(styled) = image::load_from_memory(&answer.body).unwrap() else {
        panic!("the answer is not 16-bit");
    };
    let fine = styled.as_raw().iter().filter(|&&v| v % 257 != 0).count();
    assert!(fine * 2 > styled.as_raw().len(), "only 8 bits of precision");
    let written = dir.path().join("infer.png");
    stylize(&models.join("a.safetensors"), &input, &written, &[]);
    assert_eq!(answer.body, std::fs::read(&written).unwrap());
}

/// Writes a 64×32 photo, bright in its left quarter, with EXIF orientation 6 and a Display P3
/// profile, as HEIC (pillow-heif) or AVIF (Pillow).
const WRITE_HEIF: &str = r#"
import sys
from PIL import Image
kind, path, icc_path = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "heic":
    import pillow_heif
    pillow_heif.register_heif_opener()
im = Image.new("RGB", (64, 32), (180, 40, 40))
im.paste((250, 250, 250), (0, 0, 16, 32))
exif = Image.Exif()
exif[0x0112] = 6
exif[0x010F] = "Phone Maker"
im.save(path, exif=exif.tobytes(), quality=95, icc_profile=open(icc_path, "rb").read())
"#;

#[test]
fn heic_and_avif_are_read_upright_with_their_profile_and_written_as_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 5);
    let icc_path = dir.path().join("p3.icc");
    std::fs::write(&icc_path, display_p3_icc()).unwrap();
    for (kind, modules) in [("heic", "pillow_heif"), ("avif", "PIL.AvifImagePlugin")] {
        let Some(py) = python_with(modules, &format!("the {kind} test")) else {
            continue;
        };
        let input = dir.path().join(format!("phone.{kind}"));
        python(&py, WRITE_HEIF, &[Path::new(kind), &input, &icc_path]);
        // No --output: the default name, a JPEG beside the input.
        let out = infer(&[
            "-c".as_ref(),
            model.as_os_str(),
            input.as_os_str(),
            "--device".as_ref(),
            "cpu".as_ref(),
            "--strength".as_ref(),
            "0".as_ref(),
        ]);
        let stderr = common::stderr(&out);
        if stderr.contains("need libheif") {
            let _ = writeln!(std::io::stderr(), "skipped the {kind} test: {stderr}");
            continue;
        }
        assert!(out.status.success(), "{kind}: {stderr}");
        let output = dir.path().join("phone-stylized.jpg");
        let (picture, icc) = read_tagged(&output);
        // The file's own profile (the engine stamps a new date on each one it writes).
        let p3 = std::fs::read(&icc_path).unwrap();
        assert_eq!(icc.as_deref(), Some(&p3[..]), "{kind}: profile");
        let rgb = picture.to_rgb8();
        // Turned 90° clockwise: 32 wide, 64 high, the bright quarter now on top.
        assert_eq!(rgb.dimensions(), (32, 64), "{kind}: not upright");
        assert!(
            rgb.get_pixel(16, 4)[1] > 220,
            "{kind}: the top is not bright"
        );
        assert!(
            rgb.get_pixel(16, 50)[1] < 90,
            "{kind}: the bottom is not the red part"
        );
        let exif = exif_of(&output).unwrap_or_else(|| panic!("{kind}: EXIF lost"));
        assert_eq!(field(&exif, exif::Tag::Make), "\"Phone Maker\"");
        // Upright: the tag reset to 1, or absent (pillow-heif moves it into HEIF's `irot`).
        let orientation = field(&exif, exif::Tag::Orientation);
        assert!(
            orientation.is_empty() || orientation == "row 0 at top and column 0 at left",
            "{kind}: orientation {orientation}"
        );
    }
}

#[test]
fn without_libheif_a_heic_is_that_files_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 6);
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    // A HEIF file's start (an ftyp box with the heic brand): enough to be recognised.
    let mut heic = 24u32.to_be_bytes().to_vec();
    heic.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
    heic.extend_from_slice(&[0; 64]);
    std::fs::write(photos.join("iphone.HEIC"), heic).unwrap();
    common::write_image(&photos.join("fine.png"), 12, 9, 1);
    let out = Command::new(common::bin("infer"))
        .arg("-c")
        .arg(&model)
        .arg(&photos)
        .arg("-o")
        .arg(dir.path().join("out"))
        .args(["--device", "cpu"])
        .env("FASTSTYLE_LIBHEIF", dir.path().join("no-such-libheif.so"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let errors = common::error_lines(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("iphone.HEIC") && errors[0].contains("apt-get install libheif1"));
    assert!(
        dir.path().join("out/fine.png").exists(),
        "the other photo was not written"
    );
}

/// CRC-32 (PNG's), bit by bit: the test's bomb needs valid chunks and nothing else.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    c.extend_from_slice(&crc32(&[&kind[..], data].concat()).to_be_bytes());
    c
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    common::random_model(&model, 7);
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    // A PNG declaring 30,000 × 30,000 pixels (2.7 GB of RGB) in a few hundred bytes.
    let mut ihdr = 30_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
    bomb.extend(chunk(b"IHDR", &ihdr));
    bomb.extend(chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    bomb.extend(chunk(b"IEND", &[]));
    std::fs::write(photos.join("bomb.png"), bomb).unwrap();
    common::write_image(&photos.join("fine.png"), 30, 20, 2);
    let run = |extra: &[&str]| {
        let started = std::time::Instant::now();
        let out = Command::new(common::bin("infer"))
            .arg("-c")
            .arg(&model)
            .arg(&photos)
            .arg("-o")
            .arg(dir.path().join("out"))
            .args(["--device", "cpu"])
            .args(extra)
            .output()
            .unwrap();
        (out, started.elapsed())
    };
    let (out, took) = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let errors = common::error_lines(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("bomb.png")
            && errors[0].contains("30000×30000")
            && errors[0].contains("over the limit of 200000000"),
        "{}",
        errors[0]
    );
    assert!(dir.path().join("out/fine.png").exists());
    assert!(
        took.as_secs() < 60,
        "took {took:?}: decoded rather than refused?"
    );
    // A lower limit refuses ordinary photos too, each with its line.
    let (out, _) = run(&["--max-pixels", "500", "--skip-existing"]);
    assert!(common::error_lines(&out)
        .iter()
        .any(|l| l.contains("over the limit of 500")));
}

#[test]
fn the_server_strips_metadata_unless_asked_to_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    common::random_model(&models.join("a.safetensors"), 8);
    let input = dir.path().join("camera.jpg");
    write_jpeg(
        &input,
        &common::test_image(40, 24, 1, 0, 255),
        None,
        Some(camera_exif()),
    );
    std::fs::write(&input, with_xmp(&std::fs::read(&input).unwrap(), XMP)).unwrap();
    let body = std::fs::read(&input).unwrap();
    let server = Server::start(&models, &[]);
    let url = |query: &str| format!("{}/v1/stylize?model=a{query}", server.url);

    let stripped = post(&url(""), &body, None);
    assert_eq!(stripped.status, 200, "{}", stripped.text());
    let reader = exif::Reader::new();
    assert!(reader
        .read_from_container(&mut Cursor::new(&stripped.body))
        .is_err());
    assert!(!contains(&stripped.body, "Ada Lovelace"));
    assert_eq!(
        image::load_from_memory(&stripped.body).unwrap().width(),
        24,
        "upright"
    );

    let kept = post(&url("&keep_metadata=true"), &body, None);
    assert_eq!(kept.status, 200, "{}", kept.text());
    let exif = reader
        .read_from_container(&mut Cursor::new(&kept.body))
        .unwrap();
    assert_eq!(field(&exif, exif::Tag::Make), "\"Faststyle Optics\"");
    assert!(contains(&kept.body, "Ada Lovelace"));
    // Then the answer is the file `infer` writes.
    let written = dir.path().join("infer.jpg");
    stylize(&models.join("a.safetensors"), &input, &written, &[]);
    assert_eq!(kept.body, std::fs::read(&written).unwrap());

    let bad = post(&url("&keep_metadata=maybe"), &body, None);
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("keep_metadata"));
}
