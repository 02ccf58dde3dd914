//! `train`: fits a transformer network to one style image (or several) over a folder of photos.
mod args;
mod logger;
mod styles;
mod trainer;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = args::Args::parse_args();
    match trainer::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
