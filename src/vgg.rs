//! The frozen VGG16 loss network (torchvision's `features` up to relu4_3) and its weights.
use crate::{checkpoint, device, locate};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{nn, Device, Kind, Tensor};

/// Indices in torchvision's `vgg16().features` of the ten convolutions the losses use.
pub const CONV_INDICES: [usize; 10] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21];
const CHANNELS: [(i64, i64); 10] = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
];
/// ImageNet mean of the RGB channels, on the 0…1 scale.
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation of the RGB channels, on the 0…1 scale.
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Environment variable that names the VGG16 weights file.
pub const ENV_VAR: &str = "FASTSTYLE_VGG16";
/// File name of the VGG16 weights in the folders searched.
pub const FILE_NAME: &str = "vgg16.safetensors";

/// The files searched for the VGG16 weights when neither `--vgg` nor [`ENV_VAR`] names one,
/// in order: [`FILE_NAME`] in each of [`locate::data_folders`] (`checkpoints/` of the current
/// folder, of this repository, and the per-user data folder).
pub fn search_path() -> Vec<PathBuf> {
    locate::data_folders()
        .into_iter()
        .map(|folder| folder.join(FILE_NAME))
        .collect()
}

/// Finds the VGG16 weights: `explicit` (`--vgg`) when given, else the file that
/// `$FASTSTYLE_VGG16` names, else the first of [`search_path`] that exists. When none is
/// found, the error lists every place looked at, in order.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    let (path, source) = match (
        explicit,
        std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()),
    ) {
        (Some(path), _) => (path.to_path_buf(), "--vgg"),
        (None, Some(var)) => (PathBuf::from(var), ENV_VAR),
        (None, None) => {
            let paths = search_path();
            if let Some(found) = paths.iter().find(|p| p.is_file()) {
                return Ok(found.clone());
            }
            let looked: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            bail!(
                "VGG16 weights not found: looked for --vgg FILE, then ${ENV_VAR}, then {}; \
                 `bash scripts/setup.sh` fetches them",
                looked.join(", then ")
            );
        }
    };
    if !path.is_file() {
        bail!(
            "{}: VGG16 weights not found (given by {source}); `bash scripts/setup.sh` fetches \
             them into checkpoints/",
            path.display()
        );
    }
    Ok(path)
}

/// Features of relu1_2, relu2_2, relu3_3 and relu4_3.
pub struct Features {
    /// relu1_2 (features index 3).
    pub relu1_2: Tensor,
    /// relu2_2 (features index 8).
    pub relu2_2: Tensor,
    /// relu3_3 (features index 15).
    pub relu3_3: Tensor,
    /// relu4_3 (features index 22).
    pub relu4_3: Tensor,
}

impl Features {
    /// The four style layers, shallow to deep.
    pub fn layers(&self) -> [&Tensor; 4] {
        [&self.relu1_2, &self.relu2_2, &self.relu3_3, &self.relu4_3]
    }
}

/// VGG16's first thirteen layers with frozen ImageNet weights.
pub struct Vgg16 {
    convs: Vec<(Tensor, Tensor)>,
    /// The weights cast once to the first half precision asked for (the network is frozen,
    /// so casting them at every pass, twice a step, would be wasted work).
    half: OnceLock<(Kind, Vec<(Tensor, Tensor)>)>,
    mean: Tensor,
    std: Tensor,
    _vs: nn::VarStore,
}

impl Vgg16 {
    /// Loads the weights (torchvision names, float32, OIHW) from a safetensors file.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        if !path.exists() {
            bail!(
                "{}: VGG16 weights not found; `bash scripts/setup.sh` fetches them \
                 (or pass --vgg FILE)",
                path.display()
            );
        }
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let convs = CONV_INDICES
            .iter()
            .zip(CHANNELS)
            .map(|(i, (c_in, c_out))| {
                let p = &root / "features" / i.to_string();
                (
                    p.zeros("weight", &[c_out, c_in, 3, 3]),
                    p.zeros("bias", &[c_out]),
                )
            })
            .collect();
        checkpoint::read(path)?.load_into(&vs, path)?;
        // A wrong tensor of the right shape (NaN, infinite) would train on silently.
        for (name, t) in checkpoint::variables(&vs) {
            if !bool::try_from(t.isfinite().all()).unwrap_or(false) {
                bail!(
                    "{}: tensor `{name}` holds NaN or infinite values",
                    path.display()
                );
            }
        }
        vs.freeze();
        // Only training uses the loss network, and it runs channels-last.
        device::vars_channels_last(&vs);
        let stat = |v: [f64; 3]| {
            Tensor::from_slice(&v)
                .to_kind(Kind::Float)
                .view([1, 3, 1, 1])
                .to_device(device)
        };
        Ok(Self {
            convs,
            half: OnceLock::new(),
            mean: stat(MEAN),
            std: stat(STD),
            _vs: vs,
        })
    }

    /// ImageNet normalisation of a batch in 0…255: `(x / 255 − mean) / std`.
    pub fn normalize(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        (x / 255.0 - self.mean.to_kind(kind)) / self.std.to_kind(kind)
    }

    fn conv(&self, x: &Tensor, i: usize) -> Tensor {
        let (w, b) = self.weights(i, x.kind());
        x.conv2d(&w, Some(b), [1, 1], [1, 1], [1, 1], 1).relu()
    }

    /// Convolution `i`'s weight and bias in `kind`.
    fn weights(&self, i: usize, kind: Kind) -> (Tensor, Tensor) {
        let (w, b) = &self.convs[i];
        if kind == Kind::Float {
            return (w.shallow_clone(), b.shallow_clone());
        }
        let (k, cast) = self.half.get_or_init(|| {
            let convs = self.convs.iter();
            (
                kind,
                convs
                    .map(|(w, b)| (w.to_kind(kind), b.to_kind(kind)))
                    .collect(),
            )
        });
        if *k == kind {
            (cast[i].0.shallow_clone(), cast[i].1.shallow_clone())
        } else {
            (w.to_kind(kind), b.to_kind(kind))
        }
    }

    fn pool(x: Tensor) -> Tensor {
        x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
    }

    /// relu1_2 and relu2_2 of a normalised batch: all that the content loss needs.
    fn shallow(&self, x: &Tensor) -> (Tensor, Tensor) {
        let relu1_2 = self.conv(&self.conv(x, 0), 1);
        let relu2_2 = self.conv(&self.conv(&Self::pool(relu1_2.shallow_clone()), 2), 3);
        (relu1_2, relu2_2)
    }

    /// The four feature maps of a batch in 0…255 (normalised here).
    pub fn features(&self, x: &Tensor) -> Features {
        let (relu1_2, relu2_2) = self.shallow(&self.normalize(x));
        let mut h = Self::pool(relu2_2.shallow_clone());
        for i in 4..7 {
            h = self.conv(&h, i);
        }
        let relu3_3 = h.shallow_clone();
        h = Self::pool(h);
        for i in 7..10 {
            h = self.conv(&h, i);
        }
        Features {
            relu1_2,
            relu2_2,
            relu3_3,
            relu4_3: h,
        }
    }

    /// relu2_2 of a batch in 0…255: the content target, without the deeper layers' cost.
    pub fn content_features(&self, x: &Tensor) -> Tensor {
        self.shallow(&self.normalize(x)).1
    }
}
