//! Where faststyle's data files are found from any folder: the VGG16 weights, the starter
//! model and the folder of style models that `infer --serve` serves by default.
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The folders searched, in order: `checkpoints/` of the current folder, `checkpoints/` of
/// this repository (where the set-up writes, known from the build), and the per-user data
/// folder (`$XDG_DATA_HOME/faststyle`, by default `~/.local/share/faststyle`), for binaries
/// installed elsewhere.
pub fn data_folders() -> Vec<PathBuf> {
    let mut folders = vec![
        PathBuf::from("checkpoints"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints"),
    ];
    let xdg = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share"));
    if let Some(data) = xdg.or(home) {
        folders.push(data.join("faststyle"));
    }
    folders
}

/// File name of the starter model (several styles, shipped in the repository's
/// `checkpoints/`), which `infer` uses without `--checkpoint`.
pub const STARTER: &str = "starter.safetensors";

/// The starter model: the first [`STARTER`] of [`data_folders`]; when there is none, the
/// error lists the places looked at.
pub fn starter() -> Result<PathBuf> {
    let paths: Vec<PathBuf> = data_folders().iter().map(|f| f.join(STARTER)).collect();
    if let Some(found) = paths.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "no --checkpoint given and no starter model found (looked for {}); pass --checkpoint MODEL",
        looked.join(", ")
    )
}

/// The folder `infer --serve` serves without `--models`: the first of [`data_folders`] that
/// holds the starter model, else the first that exists.
pub fn models_folder() -> Result<PathBuf> {
    let folders = data_folders();
    if let Some(found) = folders.iter().find(|f| f.join(STARTER).is_file()) {
        return Ok(found.clone());
    }
    if let Some(found) = folders.iter().find(|f| f.is_dir()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = folders.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "no --models given and no models folder found (looked for {}); pass --models DIR",
        looked.join(", ")
    )
}
