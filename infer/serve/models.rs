//! The style models under `--models`: found, loaded once, and named by their path.
use crate::adjust;
use crate::guard;
use crate::model::Stylizer;
use anyhow::{anyhow, Context, Result};
use faststyle::checkpoint;
use faststyle::device::Precision;
use faststyle::imageio::{self, OutputFormat};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::Device;
use walkdir::WalkDir;

/// The photo that every style's preview shows (Chelsea the cat from scikit-image's data, CC0,
/// cropped and scaled to 128×96).
const PREVIEW_PHOTO: &[u8] = include_bytes!("page/preview.jpg");

/// What the API says about one model (`GET /v1/models`).
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// Path below `--models` without `.safetensors`, with `/` between folders.
    pub name: String,
    /// The styles of a model that holds several, in row order; absent for one style.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub styles: Vec<String>,
    /// Name of the style image it was trained on, when the file records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style_image: Option<String>,
}

/// The loaded models: what clients see, in name order, and the networks, same order.
pub struct Loaded {
    /// Descriptions and previews, for the HTTP side.
    pub catalog: Catalog,
    /// The networks, for the worker.
    pub networks: Vec<Stylizer>,
    /// Files that looked like style models but failed to load.
    pub failures: usize,
}

/// The names the HTTP side looks models up by; a name is never used as a path.
pub struct Catalog {
    entries: Vec<(ModelInfo, Vec<u8>)>,
    by_name: BTreeMap<String, usize>,
}

impl Catalog {
    /// The index of a loaded model, by name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Every model's description, in name order.
    pub fn infos(&self) -> Vec<&ModelInfo> {
        self.entries.iter().map(|(info, _)| info).collect()
    }

    /// The model's preview: the sample photo stylized, as JPEG.
    pub fn preview(&self, index: usize) -> &[u8] {
        &self.entries[index].1
    }

    /// The description of a loaded model.
    pub fn info(&self, index: usize) -> &ModelInfo {
        &self.entries[index].0
    }
}

/// Loads every style model under `dir`. A file that fails is one warning line on stderr and
/// the rest still load; training-state files and other safetensors (VGG16) are skipped.
pub fn load_all(dir: &Path, device: Device, precision: Precision) -> Result<Loaded> {
    if !dir.is_dir() {
        return Err(anyhow!("--models {}: not a folder", dir.display()));
    }
    let preview_photo =
        imageio::decode(PREVIEW_PHOTO, None).context("the built-in preview photo")?;
    let mut found = Vec::new();
    for entry in WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                eprintln!("warning: {e}");
                continue;
            }
        };
        let path = entry.path();
        let is_model_file = entry.file_type().is_file()
            && path.extension().is_some_and(|e| e == "safetensors")
            && !path.to_string_lossy().ends_with(".state.safetensors");
        if !is_model_file {
            continue;
        }
        let header = header(path);
        if is_style_model(header.as_ref()) {
            let style = header
                .as_ref()
                .and_then(|h| h["__metadata__"]["style"].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            found.push((model_name(dir, path), path.to_path_buf(), style));
        }
    }
    let (mut entries, mut networks, mut failures) = (Vec::new(), Vec::new(), 0);
    for (name, path, style_image) in found {
        let loaded = guard::catch(|| {
            let net = Stylizer::load(&path, device, precision)?;
            let preview = preview(&net, &preview_photo)?;
            Ok((net, preview))
        });
        match loaded {
            Ok((net, preview)) => {
                let info = ModelInfo {
                    name,
                    styles: Vec::new(),
                    style_image,
                };
                entries.push((info, preview));
                networks.push(net);
            }
            Err(err) => {
                failures += 1;
                eprintln!(
                    "warning: model {}: {}",
                    path.display(),
                    crate::one_line(&err)
                );
            }
        }
    }
    let by_name = entries
        .iter()
        .enumerate()
        .map(|(i, (info, _))| (info.name.clone(), i))
        .collect();
    Ok(Loaded {
        catalog: Catalog { entries, by_name },
        networks,
        failures,
    })
}

/// `a/b` for `DIR/a/b.safetensors`.
fn model_name(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    let rel: PathBuf = rel.with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// A safetensors file's header (JSON), without reading its tensors.
fn header(path: &Path) -> Option<serde_json::Value> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    if len > 100_000_000 {
        return None;
    }
    let mut json = vec![0u8; len];
    file.read_exact(&mut json).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Whether a header announces a style model: the style-model format, or the first layer's
/// weight (a converted PyTorch state dict). A header that cannot be read counts as a model,
/// so that loading it reports what is wrong.
fn is_style_model(header: Option<&serde_json::Value>) -> bool {
    let Some(header) = header else {
        return true;
    };
    let format = header["__metadata__"]["format"].as_str();
    format == Some(checkpoint::MODEL_FORMAT)
        || (format.is_none() && header.get("conv1.conv2d.weight").is_some())
}

/// The sample photo through a model, as a small JPEG.
fn preview(net: &Stylizer, photo: &imageio::Picture) -> Result<Vec<u8>> {
    let stylized = net.stylize(&photo.rgb)?;
    let picture = adjust::finish(photo.clone(), stylized, false, 1.0)?;
    imageio::encode(&picture, OutputFormat::Jpeg, 85)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_relative_paths_with_slashes() {
        let dir = Path::new("/m");
        assert_eq!(model_name(dir, Path::new("/m/udnie.safetensors")), "udnie");
        assert_eq!(
            model_name(dir, Path::new("/m/art/mosaic.v2.safetensors")),
            "art/mosaic.v2"
        );
    }
}
