//! Held-out photos and their losses: the `val/content`, `val/style` and `val/total` curves,
//! on photos the run does not train on, so that quality and overfitting show as it goes.
use crate::args::Config;
use crate::logger::Logger;
use crate::recipe::RecipeName;
use crate::styles::Styles;
use anyhow::{bail, Context, Result};
use faststyle::conditional::StyleMix;
use faststyle::data::{self, Dataset};
use faststyle::loss::{self, LossWeights};
use faststyle::transformer::TransformerNet;
use faststyle::vgg::Vgg16;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Photos held out of the dataset when no `--val` is given (fast recipe only).
pub const HELD_OUT: usize = 4;
/// The smallest dataset that photos are held out of (so that at most a tenth is).
pub const MIN_DATASET: usize = 40;
/// Held-out photos used at most (evenly spaced in name order), to keep the curve cheap.
pub const MAX_PHOTOS: usize = 16;
/// Photos per forward pass.
const CHUNK: i64 = 4;

/// The held-out photos of a new run: `--val DIR`'s, none for `--val none`, and otherwise,
/// for the fast recipe, a few evenly spaced photos of a large enough dataset (the example
/// recipe trains on every photo, as the example does). Returns `--val`'s folder and the files.
pub fn choose(
    dataset: &Path,
    val: Option<Option<PathBuf>>,
    recipe: RecipeName,
) -> Result<(Option<PathBuf>, Vec<PathBuf>)> {
    match val {
        Some(None) => Ok((None, Vec::new())),
        Some(Some(dir)) => {
            if !dir.is_dir() {
                bail!("--val {}: not a folder of photos", dir.display());
            }
            let files = data::find_images(&dir)?;
            if files.is_empty() {
                bail!("--val {}: no images found", dir.display());
            }
            let files = evenly_spaced(&files, MAX_PHOTOS)
                .into_iter()
                .map(|p| std::path::absolute(&p).unwrap_or(p))
                .collect();
            Ok((Some(dir), files))
        }
        None if recipe == RecipeName::Fast && dataset.is_dir() => {
            let files = data::find_images(dataset)?;
            if files.len() < MIN_DATASET {
                return Ok((None, Vec::new()));
            }
            Ok((None, evenly_spaced(&files, HELD_OUT)))
        }
        None => Ok((None, Vec::new())),
    }
}

/// `n` of `files` (all when fewer), evenly spaced: the middle of each of n equal parts.
fn evenly_spaced(files: &[PathBuf], n: usize) -> Vec<PathBuf> {
    if files.len() <= n {
        return files.to_vec();
    }
    (0..n)
        .map(|i| files[(2 * i + 1) * files.len() / (2 * n)].clone())
        .collect()
}

/// The dataset without the held-out photos (compared as files, however their paths are
/// spelled); an error when nothing would be left to train on.
pub fn training_set(dataset: Dataset, held: &[PathBuf], root: &Path) -> Result<Dataset> {
    if held.is_empty() {
        return Ok(dataset);
    }
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let held: HashSet<PathBuf> = held.iter().map(|p| canonical(p)).collect();
    let files: Vec<PathBuf> = dataset
        .files
        .into_iter()
        .filter(|f| !held.contains(&canonical(f)))
        .collect();
    if files.is_empty() {
        bail!(
            "{}: every photo is held out for validation (--val); nothing left to train on",
            root.display()
        );
    }
    Ok(Dataset { files })
}

/// Held-out losses of one style.
#[derive(Clone, Copy, Debug)]
pub struct ValLosses {
    pub content: f64,
    pub style: f64,
    pub total: f64,
}

/// The held-out photos as centre crops of the run's image size, ready on the device.
pub struct Validation {
    photos: Tensor,
    /// Photos that could not be read (reported once, at the start).
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Validation {
    /// The held-out photos of `config`; `None` when it has none (or none is readable).
    pub fn load(config: &Config, device: Device) -> Result<Option<Self>> {
        let mut crops = Vec::new();
        let mut unreadable = Vec::new();
        for path in &config.val_photos {
            match data::load_photo(path, config.image_size) {
                Ok(pixels) => crops.push(pixels),
                Err(e) => unreadable.push((path.clone(), format!("{e:#}"))),
            }
        }
        if crops.is_empty() {
            return Ok(None);
        }
        let s = config.image_size as i64;
        let photos = Tensor::from_slice(&crops.concat())
            .view([crops.len() as i64, s, s, 3])
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            .to_device(device);
        Ok(Some(Self { photos, unreadable }))
    }

    /// The number of held-out photos.
    pub fn len(&self) -> i64 {
        self.photos.size()[0]
    }

    /// The losses of network row `style` against `grams` on the held-out photos, in fp32
    /// (whatever the run's precision), weighted as in training: means over the photos.
    pub fn losses(
        &self,
        net: &TransformerNet,
        vgg: &Vgg16,
        style: usize,
        grams: &[Tensor; 4],
        weights: LossWeights,
    ) -> Result<ValLosses> {
        let n = self.len();
        let mut sums = [0.0f64; 3];
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            let x = self.photos.narrow(0, start, len);
            let l = tch::no_grad(|| {
                let y = net.forward_style(&x, &StyleMix::One(style));
                loss::perceptual_losses(vgg, &x, &y, grams, weights)
            });
            let read = |t: &Tensor| t.to_kind(Kind::Double).double_value(&[]);
            for (sum, t) in sums.iter_mut().zip([&l.content, &l.style, &l.total]) {
                *sum += read(t) * len as f64;
            }
            start += len;
        }
        let [content, style, total] = sums.map(|s| s / n as f64);
        if !total.is_finite() {
            return Err(anyhow::anyhow!("the held-out loss is not finite")).context("validation");
        }
        Ok(ValLosses {
            content,
            style,
            total,
        })
    }
}

/// Says which held-out photos the run scores (and which could not be read).
pub fn announce(val: Option<&Validation>, config: &Config, logger: &Logger) {
    match val {
        Some(v) => {
            for (path, reason) in &v.unreadable {
                logger.say(&format!("warning: {}: skipped: {reason}", path.display()));
            }
            logger.say(&format!(
                "held-out photos: {} (val/* every {} iterations)",
                v.len(),
                config.val_every
            ));
        }
        None if config.recipe.name == RecipeName::Fast => logger.say(&format!(
            "no held-out photos (datasets under {MIN_DATASET} photos keep them all): --val DIR adds the val/* curves"
        )),
        None => {}
    }
}

/// What the held-out losses of a network are computed with.
pub struct Scored<'a> {
    pub net: &'a TransformerNet,
    pub vgg: &'a Vgg16,
    pub styles: &'a Styles,
    /// Gram targets of each trained style, in `styles.trained` order.
    pub style_grams: &'a [[Tensor; 4]],
    pub weights: LossWeights,
}

impl Validation {
    /// Logs the held-out losses at `step`: `val/content`, `val/style`, `val/total` (for
    /// several styles, their means over the styles, and `val/total/NAME` each).
    pub fn log(&self, s: &Scored, step: u64, logger: &mut Logger) -> Result<()> {
        let several = s.styles.names.len() > 1;
        let mut all = Vec::new();
        for (k, (row, _)) in s.styles.trained.iter().enumerate() {
            let l = self.losses(s.net, s.vgg, *row, &s.style_grams[k], s.weights)?;
            if several {
                let tag = format!("val/total/{}", s.styles.names[*row]);
                logger.scalar(&tag, l.total, step)?;
            }
            all.push(l);
        }
        let n = all.len() as f64;
        let mean = |f: fn(&ValLosses) -> f64| all.iter().map(f).sum::<f64>() / n;
        let (content, style, total) = (mean(|l| l.content), mean(|l| l.style), mean(|l| l.total));
        logger.scalar("val/content", content, step)?;
        logger.scalar("val/style", style, step)?;
        logger.scalar("val/total", total, step)?;
        logger.val(step, content, style, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_picks_are_spread_and_stable() {
        let files: Vec<PathBuf> = (0..100).map(|i| PathBuf::from(format!("{i:03}"))).collect();
        let picks = evenly_spaced(&files, 4);
        let names: Vec<_> = picks
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["012", "037", "062", "087"]);
        assert_eq!(evenly_spaced(&files[..3], 4).len(), 3);
    }
}
