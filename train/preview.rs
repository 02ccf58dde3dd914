//! `train --preview PHOTO…`: the photos' own pixels optimised against the losses that training
//! would use (Gatys et al.), at each combination of the weights and style sizes given, written
//! as one picture (a labelled sheet when there are several), so that the weights and sizes can
//! be tuned in minutes before a night of training.
use crate::args::Args;
use anyhow::{bail, Context, Result};
use faststyle::data;
use faststyle::device::{self, Precision};
use faststyle::fsutil;
use faststyle::gatys::Gatys;
use faststyle::imageio::{self, Picture};
use faststyle::interrupt::Interrupt;
use faststyle::loss::{self, LossWeights};
use faststyle::progress;
use faststyle::sheet;
use faststyle::vgg::{self, Vgg16};
use image::RgbImage;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Steps when --iterations is not given: about a minute at 256 pixels in bf16 on a recent
/// 2-core CPU, where the picture has settled enough to judge the weights.
const DEFAULT_STEPS: u64 = 300;

/// One combination of the values given: the losses' weights and the style image's size.
#[derive(Clone, Copy, Debug)]
struct Setting {
    weights: LossWeights,
    style_size: Option<u32>,
}

/// Every combination of the listed values (style weight, then content weight, then style
/// size, the last varying fastest), each labelled with the values that were given as lists.
fn settings(args: &Args) -> Result<Vec<(Setting, String)>> {
    let base = LossWeights {
        content: 1e5,
        style: 1e10,
        tv: args.tv_weight.unwrap_or(0.0),
        stability: 0.0,
    };
    let or = |v: &[f64], d: f64| if v.is_empty() { vec![d] } else { v.to_vec() };
    let styles = or(&args.style_weight, base.style);
    let contents = or(&args.content_weight, base.content);
    let sizes: Vec<Option<u32>> = if args.style_size.is_empty() {
        vec![None]
    } else {
        args.style_size.iter().map(|&s| Some(s)).collect()
    };
    let mut out = Vec::new();
    for &style in &styles {
        for &content in &contents {
            for &style_size in &sizes {
                let weights = LossWeights {
                    style,
                    content,
                    ..base
                };
                for (flag, v) in [
                    ("--style-weight", style),
                    ("--content-weight", content),
                    ("--tv-weight", base.tv),
                ] {
                    if !(v >= 0.0 && v.is_finite()) {
                        bail!("{flag} must be a finite number ≥ 0");
                    }
                }
                if style_size == Some(0) {
                    bail!("--style-size must be at least 1");
                }
                let mut label = Vec::new();
                if styles.len() > 1 {
                    label.push(format!("style {style:e}"));
                }
                if contents.len() > 1 {
                    label.push(format!("content {content:e}"));
                }
                if let (true, Some(s)) = (sizes.len() > 1, style_size) {
                    label.push(format!("style size {s}"));
                }
                let setting = Setting {
                    weights,
                    style_size,
                };
                out.push((setting, label.join("\n")));
            }
        }
    }
    Ok(out)
}

/// Runs the preview; the exit code is 130 after Ctrl-C, 143 after SIGTERM (what was reached
/// is written).
pub fn run(args: &Args) -> Result<ExitCode> {
    let device = args.device.resolve()?;
    let precision = args.precision.unwrap_or_default();
    precision.check_device(device)?;
    let style_path = match args.style.as_slice() {
        [one] if !one.is_dir() => one,
        [] => bail!("--preview needs --style IMAGE"),
        _ => bail!("--preview takes one style image (--style IMAGE)"),
    };
    let photos = &args.preview;
    let steps = args.iterations.unwrap_or(DEFAULT_STEPS);
    let size = args.image_size.unwrap_or(256);
    let log_every = args.log_every.unwrap_or(10);
    for (flag, v) in [
        ("--iterations", steps),
        ("--image-size", u64::from(size)),
        ("--log-every", log_every),
    ] {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    let settings = settings(args)?;
    let output = match &args.output {
        Some(out) => out.clone(),
        None => default_output(&photos[0]),
    };
    if imageio::OutputFormat::from_path(&output).is_none() {
        bail!(
            "{}: cannot write this format (known extensions: {})",
            output.display(),
            imageio::WRITABLE_EXTENSIONS
        );
    }
    if let Some(photo) = photos.iter().find(|p| fsutil::same_file(&output, p)) {
        bail!(
            "{}: the preview would overwrite the photo {}",
            output.display(),
            photo.display()
        );
    }
    let mut pictures = Vec::new();
    for photo in photos {
        let picture = imageio::read(photo).with_context(|| format!("{}", photo.display()))?;
        pictures.push(data::resize_shorter(&picture.rgb, size));
    }
    let vgg = Vgg16::load(&vgg::locate(args.vgg.as_deref())?, device)?;

    let interrupt = Interrupt::install("writing the preview as it is now")?;
    let runs = (photos.len() * settings.len()) as u64;
    eprintln!(
        "{} of {} in the style of {}, {steps} steps each on {} ({precision})",
        if runs > 1 {
            format!("{runs} previews")
        } else {
            "preview".to_string()
        },
        photos
            .iter()
            .zip(&pictures)
            .map(|(p, img)| format!("{} at {}×{}", p.display(), img.width(), img.height()))
            .collect::<Vec<_>>()
            .join(", "),
        style_path.display(),
        device::describe(device)
    );
    let run = Run {
        vgg: &vgg,
        precision,
        device,
        steps,
        log_every,
        bar: progress::bar(steps * runs, "steps"),
        interrupted: interrupt.flag(),
    };
    let started = Instant::now();
    // Style grams per style size, computed once each.
    let mut grams: Vec<(Option<u32>, [Tensor; 4])> = Vec::new();
    let mut tiles = Vec::new();
    let mut first = None;
    let mut done = 0;
    'photos: for (photo, pixels) in photos.iter().zip(&pictures) {
        if runs > 1 {
            tiles.push((stem(photo), pixels.clone()));
        }
        for (setting, label) in &settings {
            if interrupt.requested() {
                break 'photos;
            }
            let targets = match grams.iter().position(|(s, _)| *s == setting.style_size) {
                Some(i) => &grams[i].1,
                None => {
                    let style = data::load_style(style_path, setting.style_size)?.to_device(device);
                    grams.push((setting.style_size, loss::style_targets(&vgg, &style)));
                    &grams[grams.len() - 1].1
                }
            };
            if runs > 1 && !progress::interactive() {
                let what = if label.is_empty() { "" } else { label };
                eprintln!(
                    "preview of {}: {}",
                    photo.display(),
                    what.replace('\n', ", ")
                );
            }
            let (image, total) = run.optimise(pixels, targets, setting.weights, &mut done)?;
            first.get_or_insert(total);
            let label = if label.is_empty() {
                "preview".to_string()
            } else {
                label.clone()
            };
            tiles.push((label, image));
        }
    }
    run.bar.finish_and_clear();
    let rgb = match tiles.as_slice() {
        [(_, one)] if runs == 1 => one.clone(),
        _ => sheet::compose(&tiles, 1 + settings.len() as u32),
    };
    let picture = Picture { rgb, alpha: None };
    imageio::write(&output, &picture, imageio::DEFAULT_JPEG_QUALITY)
        .map_err(|e| fsutil::naming(e, &output))?;
    eprintln!(
        "wrote {} ({done} steps, {:.1} s{})",
        output.display(),
        started.elapsed().as_secs_f64(),
        first.map_or(String::new(), |f: [f64; 2]| format!(
            ", total loss from {:.4e} to {:.4e}",
            f[0], f[1]
        ))
    );
    if interrupt.requested() {
        eprintln!("interrupted at step {done}; the preview shows what was reached");
        return Ok(ExitCode::from(interrupt.exit_code()));
    }
    Ok(ExitCode::SUCCESS)
}

/// What every optimisation of a preview shares.
struct Run<'a> {
    vgg: &'a Vgg16,
    precision: Precision,
    device: Device,
    steps: u64,
    log_every: u64,
    bar: ProgressBar,
    interrupted: &'a AtomicBool,
}

impl Run<'_> {
    /// Optimises one photo's pixels; returns the picture reached and its first and last
    /// total loss. `done` counts the steps of all the previews, for the bar.
    fn optimise(
        &self,
        pixels: &RgbImage,
        style_grams: &[Tensor; 4],
        weights: LossWeights,
        done: &mut u64,
    ) -> Result<(RgbImage, [f64; 2])> {
        let photo = imageio::to_tensor(pixels).to_device(self.device);
        let mut gatys = Gatys::new(self.vgg, &photo, style_grams, weights, self.precision);
        let mut totals = [f64::NAN; 2];
        let mut step = 0;
        while step < self.steps && !self.interrupted.load(Ordering::SeqCst) {
            let losses = gatys.step()?;
            step += 1;
            *done += 1;
            self.bar.set_position(*done);
            if step % self.log_every == 0 || step == 1 || step == self.steps {
                let v = read(&losses)?;
                if v.iter().any(|l| !l.is_finite()) {
                    bail!(
                        "the loss became {:?} at step {step}; try other loss weights",
                        v[3]
                    );
                }
                if step == 1 {
                    totals[0] = v[3];
                }
                totals[1] = v[3];
                if progress::interactive() {
                    self.bar.set_message(format!("total {:.4e}", v[3]));
                } else {
                    println!(
                        "step {step} content {} style {} tv {} total {}",
                        v[0], v[1], v[2], v[3]
                    );
                }
            }
        }
        Ok((imageio::from_tensor(&gatys.image())?, totals))
    }
}

/// The losses (content, style, tv, total) as numbers.
fn read(losses: &loss::Losses) -> Result<Vec<f64>> {
    let t = Tensor::stack(
        &[&losses.content, &losses.style, &losses.tv, &losses.total],
        0,
    );
    Vec::<f64>::try_from(&t.detach().to_kind(Kind::Double).to_device(Device::Cpu))
        .context("cannot read losses")
}

/// A photo's file stem, its label on a sheet.
fn stem(photo: &Path) -> String {
    photo
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "photo".into())
}

/// `PHOTO-preview.jpg` beside the photo.
fn default_output(photo: &Path) -> PathBuf {
    photo.with_file_name(format!("{}-preview.jpg", stem(photo)))
}
