//! `infer`: stylizes photos and videos with a trained style model, one forward pass per
//! image or frame.
//!
//! Options are parsed here and every error is reported here; planning the outputs, the
//! decode → network → encode pipeline and the model live in the modules beside this file,
//! the image and network code in the library.
//!
//! Exit status: 0 when every input was stylized; 1 when some inputs failed (each reported as
//! `error: PATH: reason`, the others still written); 2 when nothing could start (bad options,
//! unreadable or invalid checkpoint, device unavailable); 130 when interrupted by Ctrl-C, 143
//! by SIGTERM (the images in progress are finished first). A full or read-only output disk
//! stops the run after the file that met it: the next writes would fail too.
mod adjust;
mod alloc;
mod guard;
mod model;
mod pipeline;
mod plan;
mod serve;
mod shard;
mod sheet;
mod video;

use anyhow::Result;
use clap::Parser;
use faststyle::device::{self, DeviceChoice, Precision};
use faststyle::fsutil;
use faststyle::interrupt::Interrupt;
use faststyle::progress;
use faststyle::styles::StyleChoice;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when some inputs failed.
const EXIT_SOME_FAILED: u8 = 1;
/// Exit status when nothing could start.
const EXIT_FATAL: u8 = 2;
/// Default `--max-pixels` of files (a 200-megapixel panorama passes; a decompression bomb
/// declaring 30,000 × 30,000 pixels does not).
const FILE_MAX_PIXELS: u64 = 200_000_000;
/// Default `--max-pixels` of the server.
const SERVE_MAX_PIXELS: u64 = 40_000_000;

/// Stylize photos and videos with a trained style model.
///
/// With one input file, --output is the output file (default NAME-stylized.EXT beside the
/// input); its extension picks the format. Otherwise --output is a folder (default
/// `stylized`), and each output keeps its input's path relative to the folder given (a loose
/// file keeps its name), its name and its format; a format that cannot be written becomes PNG.
/// Folders are walked recursively for image and video files; hidden files and folders are
/// skipped. Videos (mp4, mov, m4v, mkv, webm, avi; animated GIF and WebP) go through ffmpeg:
/// $FASTSTYLE_FFMPEG, else ffmpeg on PATH, else the project's .venv/bin/ffmpeg.
#[derive(Parser, Debug)]
#[command(name = "infer", version, about, long_about)]
struct Args {
    /// Style model (.safetensors) written by `train` or converted from PyTorch [default: the
    /// starter model, checkpoints/starter.safetensors of the current folder, of this
    /// repository or of ~/.local/share/faststyle, in its first style unless --style says].
    #[arg(short = 'c', long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,

    /// Image and video files and folders to stylize.
    #[arg(value_name = "INPUT", required_unless_present = "serve")]
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

    /// Leave the photos' EXIF and XMP (camera, date, GPS…) out of the outputs; by default
    /// they are kept, with the orientation reset to upright.
    #[arg(long)]
    strip_metadata: bool,

    /// Blend with the original: 1 is fully stylized, 0 gives the photo back unchanged.
    #[arg(long, default_value_t = 1.0, value_name = "F", value_parser = parse_strength)]
    strength: f32,

    /// Constant rate factor of stylized videos (H.264: 0 lossless … 51, VP9: 0 … 63).
    #[arg(long, default_value_t = 18, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=63))]
    crf: u8,

    /// JPEG quality of written JPEG files, 1 to 100.
    #[arg(long, default_value_t = faststyle::imageio::DEFAULT_JPEG_QUALITY, value_name = "Q",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,

    /// Style of a multi-style model: NAME or INDEX, or a blend NAME:W,NAME:W… (weights
    /// normalised to sum 1). A one-style model takes only its own name (or 0).
    #[arg(long, value_name = "STYLE", conflicts_with = "sheet")]
    style: Option<StyleChoice>,

    /// Write one picture of the input photo and the photo in every style of the model,
    /// each labelled with its name (--output: the picture; default NAME-sheet.EXT).
    #[arg(long)]
    sheet: bool,

    /// Tiles for large photos, in bounded memory with the untiled result: `auto` (photos over
    /// 3 megapixels, in 512-pixel tiles), `off`, or a tile side N (photos with a side over N).
    #[arg(long, default_value = "auto", value_name = "N")]
    tile: faststyle::tiled::Tiling,

    /// Only the inputs of shard K of N (a stable hash of each input's path under its folder):
    /// K/N, `auto` (a Slurm job array's task id and count) or `auto/N` (Kubernetes'
    /// JOB_COMPLETION_INDEX, or Slurm's task id, with N shards).
    #[arg(long, value_name = "K/N")]
    shard: Option<shard::ShardSpec>,

    /// Skip the inputs whose output file already exists (a restarted batch worker does only
    /// what is missing; outputs are written whole, by rename).
    #[arg(long)]
    skip_existing: bool,

    /// Serve a web page and an HTTP API at HOST:PORT instead (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR", help_heading = "Server",
          conflicts_with_all = ["checkpoint", "inputs", "output", "max_size", "preserve_color",
                                "strip_metadata"])]
    serve: Option<String>,

    /// Folder of style models to serve (every *.safetensors below it) [default: the
    /// checkpoints/ folder holding the starter model, found as --checkpoint's default is].
    #[arg(long, value_name = "DIR", requires = "serve", help_heading = "Server")]
    models: Option<PathBuf>,

    /// Require `Authorization: Bearer T` on every API call.
    #[arg(
        long,
        value_name = "T",
        env = "FASTSTYLE_TOKEN",
        hide_env_values = true,
        requires = "serve",
        help_heading = "Server"
    )]
    token: Option<String>,

    /// Largest upload in MiB.
    #[arg(long, default_value_t = 20, value_name = "N", help_heading = "Server",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_upload_mb: u64,

    /// Largest image in pixels, refused from its header before any pixel is decoded
    /// [default: 200000000 for files; 40000000 for --serve, where larger ones need the
    /// request's max_size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_pixels: Option<u64>,

    /// How many requests may wait for the network; more are answered 503.
    #[arg(long, default_value_t = 16, value_name = "N", help_heading = "Server",
          value_parser = clap::value_parser!(u64).range(1..10_000))]
    queue: u64,

    /// Connections open at once, WebSocket sessions included; one more is answered 503 and
    /// closed at once [default: what the file limit allows, at most 4096].
    #[arg(long, value_name = "N", help_heading = "Server",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,

    /// Seconds for a request's line and headers, from the connection's start or the previous
    /// answer (an idle keep-alive connection is closed after it).
    #[arg(long, default_value_t = 10.0, value_name = "S", help_heading = "Server",
          value_parser = parse_seconds)]
    header_timeout: f64,

    /// Seconds every request body gets, plus one for each --min-body-rate bytes that arrive
    /// (a slower body is answered 408).
    #[arg(long, default_value_t = 20.0, value_name = "S", help_heading = "Server",
          value_parser = parse_seconds)]
    body_timeout: f64,

    /// Bytes a second that earn a body more time (see --body-timeout).
    #[arg(long, default_value_t = 4096, value_name = "N", help_heading = "Server",
          value_parser = clap::value_parser!(u64).range(1..))]
    min_body_rate: u64,

    /// Seconds a write may wait for the client to read its answer; the connection is then
    /// closed.
    #[arg(long, default_value_t = 30.0, value_name = "S", help_heading = "Server",
          value_parser = parse_seconds)]
    send_timeout: f64,

    /// Seconds a live (WebSocket) session may send nothing before it is closed.
    #[arg(long, default_value_t = 60.0, value_name = "S", help_heading = "Server",
          value_parser = parse_seconds)]
    ws_idle_timeout: f64,

    /// Seconds between pings of a live session; a ping unanswered by the next closes it.
    #[arg(long, default_value_t = 20.0, value_name = "S", help_heading = "Server",
          value_parser = parse_seconds)]
    ws_ping_timeout: f64,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(v > 0.0 && v <= 1e6) {
        return Err(format!("{v} is not between 0 and 1000000 seconds"));
    }
    Ok(v)
}

fn parse_strength(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} is not between 0 and 1"));
    }
    Ok(v)
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    guard::install_quiet_hook();
    let args = Args::parse();
    let outcome = match &args.serve {
        Some(addr) => serve(addr, &args),
        None => run(&args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(EXIT_FATAL)
        }
    }
}

/// `--serve`: the server, on `--models` or the default models folder.
fn serve(addr: &str, args: &Args) -> Result<u8> {
    let models = match &args.models {
        Some(models) => models.clone(),
        None => faststyle::locate::models_folder()?,
    };
    serve::run(serve::Options {
        addr: addr.to_string(),
        models,
        token: args.token.clone(),
        max_upload_mb: args.max_upload_mb,
        max_pixels: args.max_pixels.unwrap_or(SERVE_MAX_PIXELS),
        queue: args.queue as usize,
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        min_body_rate: args.min_body_rate,
        send_timeout: args.send_timeout,
        ws_idle_timeout: args.ws_idle_timeout,
        ws_ping_timeout: args.ws_ping_timeout,
        device: args.device,
        precision: args.precision,
    })
}

/// An error with its causes on one line.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").lines().collect::<Vec<_>>().join(" ")
}

/// What happens to each image around the network.
fn options(args: &Args) -> pipeline::Options {
    pipeline::Options {
        max_size: args.max_size,
        max_pixels: Some(args.max_pixels.unwrap_or(FILE_MAX_PIXELS)),
        strip_metadata: args.strip_metadata,
        preserve_color: args.preserve_color,
        strength: args.strength,
        jpeg_quality: args.quality,
    }
}

/// Everything after parsing; `Err` means nothing could start.
fn run(args: &Args) -> Result<u8> {
    let (checkpoint, starter) = match &args.checkpoint {
        Some(path) => (path.clone(), false),
        None => (faststyle::locate::starter()?, true),
    };
    let checkpoint = checkpoint.as_path();
    let device = args.device.resolve()?;
    args.precision.check_device(device)?;
    if args.sheet {
        let [input] = args.inputs.as_slice() else {
            anyhow::bail!(
                "--sheet takes one photo ({} inputs given)",
                args.inputs.len()
            );
        };
        let model = model::Stylizer::load(checkpoint, device, args.precision)?;
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| sheet::default_output(input));
        sheet::run(input, &output, &model, &options(args))?;
        return Ok(0);
    }
    let mut plan = plan::plan(&args.inputs, args.output.as_deref())?;
    if let Some(spec) = args.shard {
        let shard = spec.resolve(|name| std::env::var(name).ok())?;
        shard::keep_shard(&mut plan, &args.inputs, shard);
    }
    let skipped = if args.skip_existing {
        shard::skip_existing(&mut plan)
    } else {
        0
    };
    if skipped > 0 {
        eprintln!("skipped {skipped} inputs whose output exists");
    }
    let total = plan.jobs.len() + plan.failures.len();

    // Without a handler Ctrl-C or SIGTERM would kill the process mid-write; with it, the
    // current images finish and nothing half-written is left behind.
    let interrupt = Interrupt::install("finishing the images in progress")?;

    let (videos, photos): (Vec<&plan::Job>, Vec<&plan::Job>) =
        plan.jobs.iter().partition(|j| video::is_video(&j.input));
    let noun = if videos.is_empty() { "images" } else { "files" };
    let bar = progress::bar(plan.jobs.len() as u64, noun);
    if plan.jobs.len() <= 1 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut succeeded = 0usize;
    let mut failed = 0usize;
    let mut disk_unusable = false;
    let mut report = |path: &Path, outcome: Result<()>| match outcome {
        Ok(()) => succeeded += 1,
        Err(err) => {
            failed += 1;
            bar.suspend(|| eprintln!("error: {}: {}", path.display(), one_line(&err)));
            // A full or read-only disk fails every later write there: stop after this file.
            if fsutil::is_disk_unusable(&err) {
                disk_unusable = true;
                interrupt.stop();
            }
        }
    };
    // Loaded before any file's error is shown: a bad checkpoint is the one error to see then.
    let model = if plan.jobs.is_empty() {
        None
    } else {
        let mut model =
            model::Stylizer::load(checkpoint, device, args.precision)?.with_tiling(args.tile);
        match (&args.style, starter) {
            // Without --checkpoint or --style: the starter's first style, said once.
            (None, true) => {
                let first = model.style_names()[0].clone();
                eprintln!(
                    "using the starter model {} in its style `{first}` (--style picks another of {}; --checkpoint another model)",
                    checkpoint.display(),
                    model.style_names().join(", ")
                );
                model.select(Some(&StyleChoice::Pick(first)))?;
            }
            (choice, _) => model.select(choice.as_ref())?,
        }
        Some(model)
    };
    for failure in plan.failures {
        report(&failure.path, Err(failure.error));
    }
    if let Some(model) = model {
        device::tune_for(device);
        let photos: Vec<plan::Job> = photos.into_iter().cloned().collect();
        pipeline::run(
            &photos,
            &model,
            &options(args),
            interrupt.flag(),
            |path, outcome| {
                bar.inc(1);
                report(path, outcome);
            },
        );
        let video_options = video::Options {
            max_size: args.max_size,
            preserve_color: args.preserve_color,
            strength: args.strength,
            crf: args.crf,
        };
        video::run(
            &videos,
            &model,
            &video_options,
            interrupt.flag(),
            &bar,
            |path, outcome| {
                bar.inc(1);
                report(path, outcome);
            },
        );
    }
    bar.finish_and_clear();

    if interrupt.signalled() {
        eprintln!("interrupted: stylized {succeeded} of {total} {noun}");
        return Ok(interrupt.exit_code());
    }
    if disk_unusable {
        eprintln!(
            "stopped: the output disk takes no more writes; stylized {succeeded} of {total} \
             {noun}, {} not tried; free space, then run the same command with --skip-existing \
             to do the rest",
            total - succeeded - failed
        );
        return Ok(EXIT_SOME_FAILED);
    }
    if total > 1 {
        eprintln!("stylized {succeeded} of {total} {noun}");
    }
    Ok(if failed > 0 { EXIT_SOME_FAILED } else { 0 })
}
