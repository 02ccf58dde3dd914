//! The safetensors files: style models (transformer weights and metadata), VGG16 weights
//! and the training state kept beside a checkpoint for resuming.
use crate::fsutil;
use crate::transformer::TransformerNet;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use safetensors::SafeTensorError;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// `format` metadata value of a style model.
pub const MODEL_FORMAT: &str = "faststyle.transformer";
/// `format_version` metadata value of a style model.
pub const MODEL_FORMAT_VERSION: &str = "1";

/// String metadata of a safetensors file (`__metadata__`).
pub type Metadata = BTreeMap<String, String>;

/// Tensors read from a safetensors file, converted to float32 on the CPU, by name.
pub struct TensorFile {
    /// The tensors by name.
    pub tensors: HashMap<String, Tensor>,
    /// The file's `__metadata__`, empty when it has none.
    pub metadata: Metadata,
}

/// Reads every tensor of a safetensors file. Float16, bfloat16 and float64 become float32.
pub fn read(path: &Path) -> Result<TensorFile> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&bytes).with_context(|| format!("{}", path.display()))
}

/// Why a file is not a readable safetensors file, naming the first tensor a truncated file
/// lacks, so that a user knows a copy was cut short rather than that the format is wrong.
fn damage(bytes: &[u8], err: SafeTensorError) -> anyhow::Error {
    let header = bytes
        .get(..8)
        .and_then(|n| usize::try_from(u64::from_le_bytes(n.try_into().ok()?)).ok())
        .and_then(|n| Some((n, bytes.get(8..8usize.checked_add(n)?)?)))
        .and_then(|(n, h)| Some((n, serde_json::from_slice::<serde_json::Value>(h).ok()?)));
    let Some((n, serde_json::Value::Object(entries))) = header else {
        return anyhow!("not a safetensors file (no valid header)");
    };
    let available = bytes.len() - 8 - n;
    let mut ends: Vec<(u64, &String)> = entries
        .iter()
        .filter_map(|(name, info)| Some((info["data_offsets"][1].as_u64()?, name)))
        .collect();
    ends.sort();
    match ends.iter().find(|(end, _)| *end > available as u64) {
        Some((end, name)) => {
            anyhow!("truncated: tensor `{name}` needs {end} data bytes, the file holds {available}")
        }
        None => anyhow!("{err}"),
    }
}

/// Metadata key of the sha256 of a file's tensor data (the bytes after the header), recorded
/// at write time so that a flipped bit is found when the file is read.
pub const CHECKSUM_KEY: &str = "sha256";

/// The sha256 (hex) of a safetensors buffer's tensor data: the bytes after its header.
fn data_checksum(bytes: &[u8], header_len: usize) -> String {
    use sha2::{Digest, Sha256};
    let data = bytes.get(8 + header_len..).unwrap_or_default();
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse(bytes: &[u8]) -> Result<TensorFile> {
    let (header_len, meta) = SafeTensors::read_metadata(bytes).map_err(|e| damage(bytes, e))?;
    let metadata: Metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    // Files without a checksum (converted from PyTorch, older files) load unchecked.
    if let Some(recorded) = metadata.get(CHECKSUM_KEY) {
        if *recorded != data_checksum(bytes, header_len) {
            bail!(
                "damaged: its tensor data does not match the checksum recorded when it was \
                 written (a flipped bit or a changed file)"
            );
        }
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| damage(bytes, e))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            other => bail!("tensor `{name}` has unsupported dtype {other:?}"),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
            .with_context(|| format!("tensor `{name}`"))?
            .to_kind(Kind::Float);
        tensors.insert(name, tensor);
    }
    Ok(TensorFile { tensors, metadata })
}

impl TensorFile {
    /// Copies the tensors into every variable of `vs`, by name; a missing or misshaped tensor
    /// is an error naming it. Extra tensors in the file are ignored.
    pub fn load_into(&self, vs: &nn::VarStore, path: &Path) -> Result<()> {
        for (name, mut var) in variables(vs) {
            copy_named(&self.tensors, &name, &mut var)
                .with_context(|| path.display().to_string())?;
        }
        Ok(())
    }
}

/// Copies `tensors[name]` into `dst` (no gradient recorded); a missing or misshaped tensor
/// is an error naming it.
pub fn copy_named(tensors: &HashMap<String, Tensor>, name: &str, dst: &mut Tensor) -> Result<()> {
    let src = tensors
        .get(name)
        .ok_or_else(|| anyhow!("missing tensor `{name}`"))?;
    if src.size() != dst.size() {
        bail!(
            "tensor `{name}` has shape {:?}, expected {:?}",
            src.size(),
            dst.size()
        );
    }
    tch::no_grad(|| dst.copy_(src));
    Ok(())
}

/// One tensor's bytes ready for serialisation.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_bytes(tensor: &Tensor, kind: Kind) -> Result<Bytes> {
    let dtype = match kind {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        other => bail!("cannot store tensors of kind {other:?}"),
    };
    let t = tensor
        .detach()
        .to_device(Device::Cpu)
        .to_kind(kind)
        .contiguous();
    let numel = t.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    let shape = t.size().iter().map(|&d| d as usize).collect();
    Ok(Bytes { dtype, shape, data })
}

/// Writes named tensors (stored as `kind`) and metadata to `path`, atomically, with the
/// checksum of the tensor data in the metadata.
pub fn write(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &Metadata,
    kind: Kind,
) -> Result<()> {
    write_summed(path, tensors, metadata, kind).map(|_| ())
}

/// [`write`], returning the checksum recorded (the file's `sha256` entry).
pub fn write_summed(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &Metadata,
    kind: Kind,
) -> Result<String> {
    let bytes: Vec<(String, Bytes)> = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), to_bytes(t, kind)?)))
        .collect::<Result<_>>()?;
    let serialize = |meta: &Metadata| {
        let meta: HashMap<String, String> = meta.clone().into_iter().collect();
        safetensors::tensor::serialize(bytes.iter().map(|(n, b)| (n, b)), Some(meta))
            .map_err(|e| anyhow!("{}: cannot serialise: {e:?}", path.display()))
    };
    // The data section does not depend on the header: serialised once to sum it, then
    // again with the sum in the header.
    let mut meta = metadata.clone();
    meta.remove(CHECKSUM_KEY);
    let first = serialize(&meta)?;
    let (header_len, _) = SafeTensors::read_metadata(&first)
        .map_err(|e| anyhow!("{}: cannot serialise: {e:?}", path.display()))?;
    let sum = data_checksum(&first, header_len);
    meta.insert(CHECKSUM_KEY.to_string(), sum.clone());
    fsutil::write_atomic(path, &serialize(&meta)?)?;
    Ok(sum)
}

/// The `__metadata__` of a safetensors file, from its header alone.
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    use std::io::Read;
    let describe = |what: &str| anyhow!("{}: {what}", path.display());
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| describe("not a safetensors file (no valid header)"))?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 {
        return Err(describe("not a safetensors file (no valid header)"));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|_| describe("truncated inside its header"))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|_| describe("not a safetensors file (no valid header)"))?;
    Ok(json
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// All variables of a var store, sorted by name.
pub fn variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// What a style model records about how it was made (DESIGN.md's metadata).
#[derive(Clone, Debug, Default)]
pub struct ModelInfo {
    /// Name of the style image (of a one-style model).
    pub style: String,
    /// Names of the styles in row order, when the model holds several (empty for one).
    pub styles: Vec<String>,
    /// Training iterations done.
    pub iterations: u64,
    /// Content loss weight.
    pub content_weight: f64,
    /// Style loss weight.
    pub style_weight: f64,
    /// Training crop size.
    pub image_size: u32,
    /// The id of the training run that wrote it (empty: none recorded).
    pub run: String,
}

impl ModelInfo {
    /// The metadata entries of a style model file: `style` for one style, `styles` (a JSON
    /// list) for several.
    pub fn metadata(&self) -> Metadata {
        let style = if self.styles.len() > 1 {
            ("styles", serde_json::json!(self.styles).to_string())
        } else {
            ("style", self.style.clone())
        };
        [
            ("format", MODEL_FORMAT.to_string()),
            ("format_version", MODEL_FORMAT_VERSION.to_string()),
            style,
            ("iterations", self.iterations.to_string()),
            ("content_weight", self.content_weight.to_string()),
            ("style_weight", self.style_weight.to_string()),
            ("image_size", self.image_size.to_string()),
            ("created_by", crate::CREATED_BY.to_string()),
            ("run", self.run.clone()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Saves a style model: the transformer's variables with the metadata of `info`.
pub fn save_model(path: &Path, vs: &nn::VarStore, info: &ModelInfo, kind: Kind) -> Result<()> {
    write(path, &variables(vs), &info.metadata(), kind)
}

/// Loads a style model file into the transformer's var store; returns the file's metadata.
/// A file whose `format` names something else is refused; one without metadata (a converted
/// PyTorch state dict) loads.
pub fn load_model(path: &Path, vs: &nn::VarStore) -> Result<Metadata> {
    let model = ModelFile::read(path)?;
    model.file.load_into(vs, path)?;
    Ok(model.file.metadata)
}

/// A style model file read into memory, with the names of its styles in row order.
pub struct ModelFile {
    /// Its tensors and metadata.
    pub file: TensorFile,
    /// Style names: the `styles` list of a multi-style model; for a one-style model, the
    /// stem of its `style` entry, or of the file's own name when it has none. A multi-style
    /// file without names (not one that `train` writes) names its styles by index.
    pub styles: Vec<String>,
}

impl ModelFile {
    /// Reads a style model; a file whose `format` names something else is refused.
    pub fn read(path: &Path) -> Result<Self> {
        let file = read(path)?;
        let meta = &file.metadata;
        if let Some(format) = meta.get("format") {
            if format != MODEL_FORMAT {
                bail!(
                    "{}: not a style model (format `{format}`, expected `{MODEL_FORMAT}`)",
                    path.display()
                );
            }
        }
        let stem = |p: &Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let rows = file.tensors.get("in1.weight").map(|t| t.size());
        let styles = match (meta.get("styles"), rows.as_deref()) {
            (Some(list), _) => serde_json::from_str::<Vec<String>>(list).with_context(|| {
                format!(
                    "{}: metadata `styles` is not a JSON list of names",
                    path.display()
                )
            })?,
            (None, Some(&[n, _])) => (0..n).map(|i| i.to_string()).collect(),
            (None, _) => vec![meta
                .get("style")
                .map(|s| stem(Path::new(s)))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| stem(path))],
        };
        if styles.is_empty() {
            bail!("{}: metadata `styles` is empty", path.display());
        }
        Ok(Self { file, styles })
    }

    /// A one-style network (the example's layout) or a network of this file's styles, with
    /// the file's weights, in a new var store on `device`.
    pub fn network(&self, path: &Path, device: Device) -> Result<(nn::VarStore, TransformerNet)> {
        let vs = nn::VarStore::new(device);
        let net = TransformerNet::with_styles(&vs.root(), self.styles.len());
        self.file.load_into(&vs, path)?;
        Ok((vs, net))
    }

    /// Loads this model into a var store of a network with more styles: every shared tensor,
    /// and each instance norm's rows as its first rows. The rows after them start as the
    /// mean of the file's rows: a style the shared network already knows how to draw.
    pub fn load_into_wider(&self, vs: &nn::VarStore, path: &Path) -> Result<()> {
        let n = self.styles.len() as i64;
        for (name, mut var) in variables(vs) {
            let src = self
                .file
                .tensors
                .get(&name)
                .ok_or_else(|| anyhow!("{}: missing tensor `{name}`", path.display()))?;
            let wide = var.size();
            let norm_rows = match src.size().as_slice() {
                [c] => n == 1 && wide.len() == 2 && wide[1] == *c,
                [r, c] => *r == n && wide.len() == 2 && wide[1] == *c,
                _ => false,
            };
            if norm_rows && wide[0] > n {
                let rows = src.view([n, wide[1]]);
                let mean = rows.mean_dim(0, true, rows.kind());
                tch::no_grad(|| {
                    var.narrow(0, 0, n).copy_(&rows);
                    var.narrow(0, n, wide[0] - n).copy_(&mean);
                });
            } else {
                copy_named(&self.file.tensors, &name, &mut var)
                    .with_context(|| path.display().to_string())?;
            }
        }
        Ok(())
    }
}

/// `format` metadata value of a training state file.
pub const STATE_FORMAT: &str = "faststyle.train_state";

/// The path of the training state kept beside a style model `X.safetensors`:
/// `X.state.safetensors`.
pub fn state_path(model: &Path) -> std::path::PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    model.with_file_name(format!("{stem}.state.safetensors"))
}

/// Prefix of the network's weights among a training state's tensors.
const WEIGHTS_PREFIX: &str = "model.";

/// Everything a resumed run needs: the network's weights, the optimizer moments and, in the
/// metadata, the step, the data position and the run's configuration (JSON). The state is
/// the commit point of a save: the style model beside it is written first, and the state
/// records that model's checksum, so that a model left a step ahead by a kill between the
/// two renames is found, and rewritten from the state's weights.
pub struct TrainState {
    /// Optimizer tensors by name.
    pub tensors: HashMap<String, Tensor>,
    /// The network's weights by variable name (empty in states written before they were
    /// kept here: the model file then holds them).
    pub weights: HashMap<String, Tensor>,
    /// Iterations done.
    pub step: u64,
    /// Epoch of the next batch.
    pub epoch: u64,
    /// Position of the next batch in its epoch's order.
    pub index: usize,
    /// The run's configuration, as the trainer serialised it.
    pub config: serde_json::Value,
    /// The run's id, shared by its style model's `run` entry.
    pub run: String,
    /// The checksum (`sha256` entry) of the style model saved with this state.
    pub model_sha256: String,
    /// The metadata of that style model, so that it can be written again from the weights.
    pub model_metadata: Metadata,
}

/// `format_version` of training states that hold the weights.
const STATE_FORMAT_VERSION: &str = "2";

impl TrainState {
    /// Writes the state file atomically, with the optimizer's tensors and the weights.
    pub fn save(
        &self,
        path: &Path,
        optimizer: &[(String, Tensor)],
        weights: &[(String, Tensor)],
    ) -> Result<()> {
        let metadata: Metadata = [
            ("format", STATE_FORMAT.to_string()),
            ("format_version", STATE_FORMAT_VERSION.to_string()),
            ("step", self.step.to_string()),
            ("epoch", self.epoch.to_string()),
            ("index", self.index.to_string()),
            ("config", self.config.to_string()),
            ("run", self.run.clone()),
            ("model_sha256", self.model_sha256.clone()),
            (
                "model_metadata",
                serde_json::json!(self.model_metadata).to_string(),
            ),
            ("created_by", crate::CREATED_BY.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut tensors: Vec<(String, Tensor)> = optimizer
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        for (name, t) in weights {
            tensors.push((format!("{WEIGHTS_PREFIX}{name}"), t.shallow_clone()));
        }
        write(path, &tensors, &metadata, Kind::Float)
    }

    /// Reads a state file written by [`TrainState::save`] (or by an earlier version, which
    /// kept the weights in the model file only).
    pub fn load(path: &Path) -> Result<Self> {
        let file = read(path)?;
        let meta = &file.metadata;
        let field = |key: &str| {
            meta.get(key)
                .ok_or_else(|| anyhow!("{}: not a training state (no `{key}`)", path.display()))
        };
        if field("format")? != STATE_FORMAT {
            bail!("{}: not a training state file", path.display());
        }
        let number = |key: &str| -> Result<u64> {
            field(key)?
                .parse()
                .with_context(|| format!("{}: bad `{key}`", path.display()))
        };
        let text = |key: &str| meta.get(key).cloned().unwrap_or_default();
        let model_metadata = match meta.get("model_metadata") {
            Some(json) => serde_json::from_str(json)
                .with_context(|| format!("{}: bad `model_metadata`", path.display()))?,
            None => Metadata::new(),
        };
        let (mut tensors, mut weights) = (HashMap::new(), HashMap::new());
        for (name, t) in file.tensors {
            match name.strip_prefix(WEIGHTS_PREFIX) {
                Some(var) => weights.insert(var.to_string(), t),
                None => tensors.insert(name, t),
            };
        }
        Ok(Self {
            step: number("step")?,
            epoch: number("epoch")?,
            index: number("index")? as usize,
            config: serde_json::from_str(field("config")?)
                .with_context(|| format!("{}: bad `config`", path.display()))?,
            run: text("run"),
            model_sha256: text("model_sha256"),
            model_metadata,
            tensors,
            weights,
        })
    }

    /// Writes the style model saved with this state again, from the state's weights: the
    /// same tensors and metadata, so the same checksum.
    pub fn write_model(&self, path: &Path) -> Result<()> {
        let mut weights: Vec<(String, Tensor)> = self
            .weights
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        write(path, &weights, &self.model_metadata, Kind::Float)
    }
}
