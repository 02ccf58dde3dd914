//! `train`: fits a transformer network to one style image (or several) over a folder of
//! photos, or (`--preview`) shows in a minute what those losses make of one photo.
mod args;
mod checkpointer;
mod events;
mod feed;
mod launch;
mod logger;
mod meter;
mod preview;
mod ranks;
mod recipe;
mod resume;
mod samples;
mod schedule;
mod session;
mod signals;
mod styles;
mod trainer;
mod validate;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = args::Args::parse_args();
    let result = if args.preview.is_empty() {
        trainer::run(args)
    } else {
        preview::run(&args)
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
