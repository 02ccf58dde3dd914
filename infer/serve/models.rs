//! The style models under `--models`: found, loaded, and named by their path. A [`Catalog`]
//! is one set of loaded models; a rescan (see `reload`) builds the next set, reusing the
//! models whose files did not change.
use crate::adjust;
use crate::guard;
use crate::model::Stylizer;
use anyhow::{anyhow, Context, Result};
use faststyle::checkpoint;
use faststyle::conditional::StyleMix;
use faststyle::device::Precision;
use faststyle::imageio::{self, OutputFormat};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tch::Device;
use walkdir::WalkDir;

/// The photo that every style's preview shows (Chelsea the cat from scikit-image's data, CC0,
/// cropped and scaled to 128×96).
const PREVIEW_PHOTO: &[u8] = include_bytes!("page/preview.jpg");

/// A loaded network, shared by the catalogs that list it and the jobs that use it (a job
/// keeps its network alive after a reload has replaced or removed it).
pub type Network = Arc<Mutex<Stylizer>>;

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

/// A model file as found on disk: what tells a changed file from the one loaded before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    /// Device and inode: a file replaced by rename is a new file even with the same size
    /// and time.
    id: (u64, u64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let id = (0, 0);
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            id,
        })
    }
}

/// One loaded model: what clients see and the network.
pub struct Model {
    info: ModelInfo,
    /// Every style's name in row order (one name for a one-style model).
    style_names: Vec<String>,
    /// The sample photo in each style, as JPEG, in row order.
    previews: Vec<Vec<u8>>,
    network: Network,
    /// The file as it was when it was loaded.
    stamp: Option<FileStamp>,
}

/// One set of loaded models, by name; a name is never used as a path.
pub struct Catalog {
    entries: Vec<Arc<Model>>,
    by_name: BTreeMap<String, usize>,
}

impl Catalog {
    /// A catalog of `models`, in name order.
    fn new(mut models: Vec<Arc<Model>>) -> Catalog {
        models.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        let by_name = models
            .iter()
            .enumerate()
            .map(|(i, e)| (e.info.name.clone(), i))
            .collect();
        Catalog {
            entries: models,
            by_name,
        }
    }

    /// The index of a loaded model, by name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// How many models it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every model's description, in name order.
    pub fn infos(&self) -> Vec<&ModelInfo> {
        self.entries.iter().map(|e| &e.info).collect()
    }

    /// The preview of one of the model's styles: the sample photo stylized, as JPEG.
    pub fn preview(&self, index: usize, style: usize) -> &[u8] {
        &self.entries[index].previews[style]
    }

    /// The description of a loaded model.
    pub fn info(&self, index: usize) -> &ModelInfo {
        &self.entries[index].info
    }

    /// The model's style names in row order (its one style's name for a one-style model).
    pub fn style_names(&self, index: usize) -> &[String] {
        &self.entries[index].style_names
    }

    /// The network of a loaded model.
    pub fn network(&self, index: usize) -> Network {
        Arc::clone(&self.entries[index].network)
    }

    fn by_name(&self, name: &str) -> Option<&Arc<Model>> {
        self.find(name).map(|i| &self.entries[i])
    }
}

/// Loads models from one folder, on one device, in one precision.
pub struct Loader {
    dir: PathBuf,
    device: Device,
    precision: Precision,
    preview_photo: imageio::Picture,
}

/// What a scan of the folder did.
#[derive(Debug, Default, Serialize)]
pub struct Changes {
    /// Models loaded for the first time.
    pub added: Vec<String>,
    /// Models whose file changed and loaded again.
    pub replaced: Vec<String>,
    /// Models whose file is gone.
    pub removed: Vec<String>,
    /// Models whose file did not change (kept as they were).
    pub unchanged: usize,
    /// Files that failed to load, each `{model, error}`; a model loaded before keeps its old
    /// version.
    pub errors: Vec<LoadError>,
}

/// A model file that failed to load.
#[derive(Debug, Serialize)]
pub struct LoadError {
    /// The model's name.
    pub model: String,
    /// One line saying why.
    pub error: String,
    /// Whether an older version of it goes on serving.
    pub old_version_serves: bool,
}

impl Loader {
    /// A loader of the style models under `dir`.
    pub fn new(dir: &Path, device: Device, precision: Precision) -> Result<Loader> {
        let preview_photo =
            imageio::decode(PREVIEW_PHOTO, None).context("the built-in preview photo")?;
        Ok(Loader {
            dir: dir.to_path_buf(),
            device,
            precision,
            preview_photo,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every style model under the folder, reusing those of `old` whose file has not
    /// changed. A file that fails is one warning line on stderr: the others still load, and
    /// the model's old version (if any) stays. Training-state files and other safetensors
    /// (VGG16) are skipped. `Err` only when the folder cannot be read at all.
    pub fn scan(&self, old: &Catalog) -> Result<(Catalog, Changes)> {
        if !self.dir.is_dir() {
            return Err(anyhow!("--models {}: not a folder", self.dir.display()));
        }
        let mut changes = Changes::default();
        let mut models = Vec::new();
        for (name, path, style_image) in self.find() {
            let stamp = FileStamp::of(&path);
            let before = old.by_name(&name);
            if let Some(model) = before.filter(|m| stamp.is_some() && m.stamp == stamp) {
                models.push(Arc::clone(model));
                changes.unchanged += 1;
                continue;
            }
            match self.load(name.clone(), &path, style_image, stamp) {
                Ok(model) => {
                    if before.is_some() {
                        changes.replaced.push(name);
                    } else {
                        changes.added.push(name);
                    }
                    models.push(Arc::new(model));
                }
                Err(err) => {
                    let error = crate::one_line(&err);
                    let kept = if before.is_some() {
                        "; its previous version keeps serving"
                    } else {
                        ""
                    };
                    // The error usually names the file already.
                    let shown = path.display().to_string();
                    if error.contains(&shown) {
                        eprintln!("warning: model {error}{kept}");
                    } else {
                        eprintln!("warning: model {shown}: {error}{kept}");
                    }
                    if let Some(model) = before {
                        models.push(Arc::clone(model));
                    }
                    changes.errors.push(LoadError {
                        model: name,
                        error,
                        old_version_serves: before.is_some(),
                    });
                }
            }
        }
        let catalog = Catalog::new(models);
        changes.removed = old
            .entries
            .iter()
            .map(|m| m.info.name.clone())
            .filter(|name| catalog.find(name).is_none())
            .collect();
        Ok((catalog, changes))
    }

    /// An empty catalog (what a first scan starts from).
    pub fn empty() -> Catalog {
        Catalog::new(Vec::new())
    }

    /// The style model files under the folder: name, path, the style image it records.
    fn find(&self) -> Vec<(String, PathBuf, Option<String>)> {
        let mut found = Vec::new();
        for entry in WalkDir::new(&self.dir)
            .follow_links(true)
            .sort_by_file_name()
        {
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
                found.push((model_name(&self.dir, path), path.to_path_buf(), style));
            }
        }
        found
    }

    /// Loads one model and makes its previews.
    fn load(
        &self,
        name: String,
        path: &Path,
        style_image: Option<String>,
        stamp: Option<FileStamp>,
    ) -> Result<Model> {
        let (net, previews) = guard::catch(|| {
            let net = Stylizer::load(path, self.device, self.precision)?;
            let previews = (0..net.style_names().len())
                .map(|i| preview(&net, &StyleMix::One(i), &self.preview_photo))
                .collect::<Result<Vec<_>>>()?;
            Ok((net, previews))
        })?;
        let style_names = net.style_names().to_vec();
        let info = ModelInfo {
            name,
            styles: if style_names.len() > 1 {
                style_names.clone()
            } else {
                Vec::new()
            },
            style_image,
        };
        Ok(Model {
            info,
            style_names,
            previews,
            network: Arc::new(Mutex::new(net)),
            stamp,
        })
    }
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

/// The sample photo through one of a model's styles, as a small JPEG.
fn preview(net: &Stylizer, style: &StyleMix, photo: &imageio::Picture) -> Result<Vec<u8>> {
    let stylized = net.stylize_as(&photo.rgb, style)?;
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
