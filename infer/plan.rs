//! From the command line's inputs and `--output` to a list of (input file, output file) jobs,
//! with the inputs that cannot be stylized (missing, clashing outputs) as failures.
use crate::video;
use anyhow::{anyhow, bail, Error, Result};
use faststyle::imageio::{self, OutputFormat, WRITABLE_EXTENSIONS};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Default output folder when the inputs are several files or a folder.
pub const DEFAULT_OUTPUT_FOLDER: &str = "stylized";

/// One image to stylize and where its result goes.
#[derive(Clone, Debug)]
pub struct Job {
    /// The image file.
    pub input: PathBuf,
    /// The file to write.
    pub output: PathBuf,
}

/// An input that will not be stylized, and why.
#[derive(Debug)]
pub struct Failure {
    /// The input (or the path inside an input folder) concerned.
    pub path: PathBuf,
    /// Why.
    pub error: Error,
}

/// What a run will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Images to stylize, in the order given (folders in file-name order).
    pub jobs: Vec<Job>,
    /// Inputs refused before any work.
    pub failures: Vec<Failure>,
}

/// Plans a run. `Err` only for a wrong `--output` (nothing can run); problems of single
/// inputs become failures.
pub fn plan(inputs: &[PathBuf], output: Option<&Path>) -> Result<Plan> {
    let single_file = inputs.len() == 1 && inputs[0].is_file() && !output.is_some_and(names_folder);
    let mut plan = if single_file {
        let input = &inputs[0];
        let output = match output {
            Some(out) if video::is_video(input) => {
                if !video::can_write(out) {
                    bail!(
                        "--output {}: cannot write a video in this format (use one of the extensions {})",
                        out.display(),
                        video::WRITABLE
                    );
                }
                out.to_path_buf()
            }
            Some(out) => {
                if OutputFormat::from_path(out).is_none() {
                    bail!(
                        "--output {}: cannot write this format (use one of the extensions {WRITABLE_EXTENSIONS})",
                        out.display()
                    );
                }
                out.to_path_buf()
            }
            None => default_output_file(input),
        };
        Plan {
            jobs: vec![Job {
                input: input.clone(),
                output,
            }],
            failures: Vec::new(),
        }
    } else {
        let folder = output.unwrap_or(Path::new(DEFAULT_OUTPUT_FOLDER));
        if folder.exists() && !folder.is_dir() {
            bail!(
                "--output {} is a file; with several inputs or a folder it must be a folder",
                folder.display()
            );
        }
        collect(inputs, folder)
    };
    refuse_clashes(&mut plan);
    Ok(plan)
}

/// Whether `--output` names a folder: an existing one, or a path ending in a separator.
fn names_folder(path: &Path) -> bool {
    path.is_dir()
        || path
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR)
}

/// `NAME-stylized.EXT` beside the input (EXT `jpg` for HEIF and AVIF, `png` for other formats
/// that cannot be written).
fn default_output_file(input: &Path) -> PathBuf {
    let named = output_name(input);
    let mut name: OsString = named.file_stem().unwrap_or_default().to_owned();
    name.push("-stylized");
    let ext = named.extension().map(|e| e.to_owned());
    let mut out = input.with_file_name(name);
    if let Some(ext) = ext {
        out.set_extension(ext);
    } else {
        out.set_extension("png");
    }
    out
}

/// Jobs for files and folders writing into `folder`, each output at its input's path
/// relative to the folder given (a loose file: its name).
fn collect(inputs: &[PathBuf], folder: &Path) -> Plan {
    let mut plan = Plan::default();
    // Never walk into the output folder: a second run would stylize the first run's results.
    let skip = folder.canonicalize().ok();
    for input in inputs {
        match std::fs::metadata(input) {
            Err(e) => plan.failures.push(Failure {
                path: input.clone(),
                error: anyhow!(e),
            }),
            Ok(meta) if meta.is_dir() => walk(input, folder, skip.as_deref(), &mut plan),
            Ok(_) => {
                let name = input.file_name().map(Path::new).unwrap_or(input);
                plan.jobs.push(Job {
                    input: input.clone(),
                    output: folder.join(output_name(name)),
                });
            }
        }
    }
    plan
}

fn walk(root: &Path, folder: &Path, skip: Option<&Path>, plan: &mut Plan) {
    let before = plan.jobs.len() + plan.failures.len();
    let entries = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
            // Below the root only: an output folder equal to the input folder is refused
            // file by file instead (every output would overwrite its input).
            let is_output = e.depth() > 0
                && e.file_type().is_dir()
                && skip.is_some_and(|s| e.path().canonicalize().is_ok_and(|p| p == s));
            !hidden && !is_output
        });
    for entry in entries {
        match entry {
            Err(e) => plan.failures.push(Failure {
                path: e.path().unwrap_or(root).to_path_buf(),
                error: anyhow!(
                    "{}",
                    e.io_error().map_or(e.to_string(), |io| io.to_string())
                ),
            }),
            Ok(e)
                if e.file_type().is_file()
                    && (imageio::has_image_extension(e.path())
                        || video::has_video_extension(e.path())) =>
            {
                let rel = e.path().strip_prefix(root).unwrap_or(e.path());
                plan.jobs.push(Job {
                    input: e.path().to_path_buf(),
                    output: folder.join(output_name(rel)),
                });
            }
            Ok(_) => {}
        }
    }
    if plan.jobs.len() + plan.failures.len() == before {
        plan.failures.push(Failure {
            path: root.to_path_buf(),
            error: anyhow!("no image or video files found in this folder"),
        });
    }
}

/// The output name of an input: a video keeps its name (and container), an image the name
/// that [`imageio::output_name`] gives.
fn output_name(input: &Path) -> PathBuf {
    if video::has_video_extension(input) {
        input.to_path_buf()
    } else {
        imageio::output_name(input)
    }
}

/// Turns into failures the jobs whose output another job already writes, and those whose
/// output is one of the inputs: an input is never overwritten.
fn refuse_clashes(plan: &mut Plan) {
    let inputs: HashSet<PathBuf> = plan
        .jobs
        .iter()
        .filter_map(|j| j.input.canonicalize().ok())
        .collect();
    // Output → (input writing it, that input resolved).
    let mut writers: HashMap<PathBuf, (PathBuf, PathBuf)> = HashMap::new();
    let mut kept = Vec::with_capacity(plan.jobs.len());
    for job in std::mem::take(&mut plan.jobs) {
        let target = resolved(&job.output);
        let source = resolved(&job.input);
        let error = if inputs.contains(&target) {
            Some(anyhow!(
                "output {} is an input file; refusing to overwrite it",
                job.output.display()
            ))
        } else if let Some((first, first_source)) = writers.get(&target) {
            if *first_source == source {
                // The same file named twice (say, a folder and a file in it): one job does.
                continue;
            }
            Some(anyhow!(
                "output {} would also be written from {}; skipped",
                job.output.display(),
                first.display()
            ))
        } else {
            writers.insert(target, (job.input.clone(), source));
            None
        };
        match error {
            Some(error) => plan.failures.push(Failure {
                path: job.input,
                error,
            }),
            None => kept.push(job),
        }
    }
    plan.jobs = kept;
}

/// A path made absolute with its folder resolved (it may not exist yet), for comparisons.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => match parent.canonicalize() {
            Ok(p) => p.join(name),
            Err(_) => absolute,
        },
        _ => absolute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_file_names() {
        assert_eq!(
            default_output_file(Path::new("a/photo.JPG")),
            Path::new("a/photo-stylized.JPG")
        );
        assert_eq!(
            default_output_file(Path::new("a/photo.heic")),
            Path::new("a/photo-stylized.jpg")
        );
        assert_eq!(
            default_output_file(Path::new("a/photo.exr")),
            Path::new("a/photo-stylized.png")
        );
        assert_eq!(
            default_output_file(Path::new("photo")),
            Path::new("photo-stylized.png")
        );
        assert_eq!(
            default_output_file(Path::new("clips/holiday.MOV")),
            Path::new("clips/holiday-stylized.MOV")
        );
    }
}
