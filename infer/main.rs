//! `infer`: stylizes photos with a trained style model, one forward pass per image.
//!
//! Options are parsed here and every error is reported here; planning the outputs, the
//! decode → network → encode pipeline and the model live in the modules beside this file,
//! the image and network code in the library.
//!
//! Exit status: 0 when every input was stylized; 1 when some inputs failed (each reported as
//! `error: PATH: reason`, the others still written); 2 when nothing could start (bad options,
//! unreadable or invalid checkpoint, device unavailable); 130 when interrupted by Ctrl-C.
mod guard;
mod model;
mod pipeline;
mod plan;

use anyhow::{Context, Result};
use clap::Parser;
use faststyle::device::{self, DeviceChoice, Precision};
use faststyle::progress;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit status when some inputs failed.
const EXIT_SOME_FAILED: u8 = 1;
/// Exit status when nothing could start.
const EXIT_FATAL: u8 = 2;
/// Exit status after Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// Stylize photos with a trained style model.
///
/// With one input file, --output is the output file (default NAME-stylized.EXT beside the
/// input); its extension picks the format. Otherwise --output is a folder (default
/// `stylized`), and each output keeps its input's path relative to the folder given (a loose
/// file keeps its name), its name and its format; a format that cannot be written becomes PNG.
/// Folders are walked recursively for image files; hidden files and folders are skipped.
#[derive(Parser, Debug)]
#[command(name = "infer", version, about, long_about)]
struct Args {
    /// Style model (.safetensors) written by `train` or converted from PyTorch.
    #[arg(short = 'c', long, value_name = "FILE")]
    checkpoint: PathBuf,

    /// Image files and folders to stylize.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,

    /// Output file (one input file) or folder (several inputs or a folder; default `stylized`).
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,

    /// Where the network runs: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    device: DeviceChoice,

    /// Precision of the network: fp32, bf16 (CUDA, or a CPU with AVX-512 BF16 or AMX), fp16 (CUDA).
    #[arg(long, default_value = "fp32", value_name = "P")]
    precision: Precision,

    /// Scale each image down so that its longer side is at most N pixels before stylizing.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_size: Option<u32>,

    /// Keep each photo's colours: take only the luminance from the stylized result.
    #[arg(long)]
    preserve_color: bool,

    /// Blend with the original: 1 is fully stylized, 0 gives the photo back unchanged.
    #[arg(long, default_value_t = 1.0, value_name = "F", value_parser = parse_strength)]
    strength: f32,

    /// JPEG quality of written JPEG files, 1 to 100.
    #[arg(long, default_value_t = faststyle::imageio::DEFAULT_JPEG_QUALITY, value_name = "Q",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
}

fn parse_strength(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} is not between 0 and 1"));
    }
    Ok(v)
}

fn main() -> ExitCode {
    guard::install_quiet_hook();
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(EXIT_FATAL)
        }
    }
}

/// An error with its causes on one line.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").lines().collect::<Vec<_>>().join(" ")
}

/// Everything after parsing; `Err` means nothing could start.
fn run(args: &Args) -> Result<u8> {
    let device = args.device.resolve()?;
    args.precision.check_device(device)?;
    let plan = plan::plan(&args.inputs, args.output.as_deref())?;
    let total = plan.jobs.len() + plan.failures.len();

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // Without a handler Ctrl-C would kill the process mid-write; with it, the current
        // image finishes and nothing half-written is left behind.
        ctrlc::set_handler(move || {
            if !flag.swap(true, Ordering::SeqCst) {
                // On a terminal the progress bar holds the current line.
                let newline = if progress::interactive() { "\n" } else { "" };
                eprintln!("{newline}interrupted: finishing the images in progress");
            }
        })
        .context("cannot install the Ctrl-C handler")?;
    }

    let bar = progress::bar(plan.jobs.len() as u64, "images");
    if plan.jobs.len() <= 1 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut succeeded = 0usize;
    let mut failed = 0usize;
    let mut report = |path: &Path, outcome: Result<()>| match outcome {
        Ok(()) => succeeded += 1,
        Err(err) => {
            failed += 1;
            bar.suspend(|| eprintln!("error: {}: {}", path.display(), one_line(&err)));
        }
    };
    // Loaded before any file's error is shown: a bad checkpoint is the one error to see then.
    let model = if plan.jobs.is_empty() {
        None
    } else {
        Some(model::Stylizer::load(
            &args.checkpoint,
            device,
            args.precision,
        )?)
    };
    for failure in plan.failures {
        report(&failure.path, Err(failure.error));
    }
    if let Some(model) = model {
        device::tune_for(device);
        let options = pipeline::Options {
            max_size: args.max_size,
            preserve_color: args.preserve_color,
            strength: args.strength,
            jpeg_quality: args.quality,
        };
        pipeline::run(
            &plan.jobs,
            &model,
            &options,
            &interrupted,
            |path, outcome| {
                bar.inc(1);
                report(path, outcome);
            },
        );
    }
    bar.finish_and_clear();

    let interrupted = interrupted.load(Ordering::SeqCst);
    if interrupted {
        eprintln!("interrupted: stylized {succeeded} of {total} images");
        return Ok(EXIT_INTERRUPTED);
    }
    if total > 1 {
        eprintln!("stylized {succeeded} of {total} images");
    }
    Ok(if failed > 0 { EXIT_SOME_FAILED } else { 0 })
}
