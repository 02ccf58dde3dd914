//! `train --preview PHOTO`: the photo's own pixels optimised against the losses that training
//! would use (Gatys et al.), written as a picture, so that the weights and sizes can be tuned
//! in a minute before a night of training.
use crate::args::Args;
use anyhow::{bail, Context, Result};
use faststyle::data;
use faststyle::device;
use faststyle::fsutil;
use faststyle::gatys::Gatys;
use faststyle::imageio::{self, Picture};
use faststyle::interrupt::Interrupt;
use faststyle::loss;
use faststyle::progress;
use faststyle::vgg::{self, Vgg16};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Steps when --iterations is not given: about a minute at 256 pixels in bf16 on a recent
/// 2-core CPU, where the picture has settled enough to judge the weights.
const DEFAULT_STEPS: u64 = 300;

/// Runs the preview; the exit code is 130 after Ctrl-C, 143 after SIGTERM (what was reached
/// is written).
pub fn run(args: &Args, photo: &Path) -> Result<ExitCode> {
    let device = args.device.resolve()?;
    let precision = args.precision.unwrap_or_default();
    precision.check_device(device)?;
    let style_path = match args.style.as_slice() {
        [one] if !one.is_dir() => one,
        [] => bail!("--preview needs --style IMAGE"),
        _ => bail!("--preview takes one style image (--style IMAGE)"),
    };
    let steps = args.iterations.unwrap_or(DEFAULT_STEPS);
    let size = args.image_size.unwrap_or(256);
    let log_every = args.log_every.unwrap_or(10);
    for (flag, v) in [
        ("--iterations", steps),
        ("--image-size", u64::from(size)),
        ("--style-size", u64::from(args.style_size.unwrap_or(1))),
        ("--log-every", log_every),
    ] {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    let weights = args.loss_weights()?;
    let output = match &args.output {
        Some(out) => out.clone(),
        None => default_output(photo),
    };
    if imageio::OutputFormat::from_path(&output).is_none() {
        bail!(
            "{}: cannot write this format (known extensions: {})",
            output.display(),
            imageio::WRITABLE_EXTENSIONS
        );
    }
    if fsutil::same_file(&output, photo) {
        bail!(
            "{}: the preview would overwrite the photo",
            output.display()
        );
    }

    let picture = imageio::read(photo).with_context(|| format!("{}", photo.display()))?;
    let pixels = data::resize_shorter(&picture.rgb, size);
    let style = data::load_style(style_path, args.style_size)?.to_device(device);
    let vgg = Vgg16::load(&vgg::locate(args.vgg.as_deref())?, device)?;
    let style_grams = loss::style_targets(&vgg, &style);
    let photo_t = imageio::to_tensor(&pixels).to_device(device);
    let mut gatys = Gatys::new(&vgg, &photo_t, &style_grams, weights, precision);

    let interrupt = Interrupt::install("writing the preview as it is now")?;
    let (w, h) = pixels.dimensions();
    eprintln!(
        "preview of {} in the style of {} at {w}×{h}, {steps} steps on {} ({precision})",
        photo.display(),
        style_path.display(),
        device::describe(device)
    );
    let bar = progress::bar(steps, "steps");
    let started = Instant::now();
    let mut first = None;
    let mut done = 0;
    while done < steps && !interrupt.requested() {
        let losses = gatys.step()?;
        done += 1;
        bar.set_position(done);
        if done % log_every == 0 || done == 1 || done == steps {
            let v = read(&losses)?;
            if v.iter().any(|l| !l.is_finite()) {
                bail!(
                    "the loss became {:?} at step {done}; try other loss weights",
                    v[3]
                );
            }
            first.get_or_insert(v[3]);
            let line = format!(
                "step {done} content {} style {} tv {} total {}",
                v[0], v[1], v[2], v[3]
            );
            if progress::interactive() {
                bar.set_message(format!("total {:.4e}", v[3]));
            } else {
                println!("{line}");
            }
        }
    }
    bar.finish_and_clear();
    let image = imageio::from_tensor(&gatys.image())?;
    imageio::write(
        &output,
        &Picture {
            rgb: image,
            alpha: None,
        },
        imageio::DEFAULT_JPEG_QUALITY,
    )
    .map_err(|e| fsutil::naming(e, &output))?;
    eprintln!(
        "wrote {} ({done} steps, {:.1} s{})",
        output.display(),
        started.elapsed().as_secs_f64(),
        first.map_or(String::new(), |f| format!(", total loss from {f:.4e}"))
    );
    if interrupt.requested() {
        eprintln!("interrupted at step {done}; the preview shows that step");
        return Ok(ExitCode::from(interrupt.exit_code()));
    }
    Ok(ExitCode::SUCCESS)
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

/// `PHOTO-preview.jpg` beside the photo.
fn default_output(photo: &Path) -> PathBuf {
    let stem = photo
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "photo".into());
    photo.with_file_name(format!("{stem}-preview.jpg"))
}
