//! Training recipes: `example`, the PyTorch example's exactly, and `fast`, faststyle's own
//! (README, "Time to quality"). A recipe gives the defaults of the learning rate, its
//! schedule, the crop sizes over the run, Adam's betas and the network a run starts from;
//! each setting can be given on its own, and the settings are recorded with the run.
use crate::args::Config;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Which recipe a run follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RecipeName {
    /// The PyTorch fast-neural-style example's: constant lr 1e-3, full-size crops, fresh
    /// weights (runs recorded before recipes existed were all this one).
    Example,
    /// faststyle's, the default: a 4× higher peak after a short warm-up, a warm start from
    /// the shipped base network, and several styles balanced.
    #[default]
    Fast,
}

impl fmt::Display for RecipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecipeName::Example => "example",
            RecipeName::Fast => "fast",
        })
    }
}

/// How the learning rate falls after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Constant at the peak.
    None,
    /// Half a cosine from the peak to 0 at the run's last iteration.
    Cosine,
    /// A straight line from the peak to 0 at the run's last iteration.
    Linear,
}

impl fmt::Display for Decay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decay::None => "none",
            Decay::Cosine => "cosine",
            Decay::Linear => "linear",
        })
    }
}

/// A recipe's settings, recorded in `config.json` and (with the learning rate, batch and
/// sizes) in the style model's metadata as `recipe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The recipe whose defaults these are (settings given on the command line replace them).
    pub name: RecipeName,
    /// Fraction of the run over which the learning rate rises linearly from 0 to its peak.
    pub warmup: f64,
    /// How it falls after the warm-up.
    pub decay: Decay,
    /// Fraction of the run, at its start, trained on crops of half the image size.
    pub progressive: f64,
    /// Adam's β₁ and β₂.
    pub betas: [f64; 2],
    /// The network a new run starts from when `--init` is not given (`None`: fresh weights).
    pub base: Option<PathBuf>,
    /// Several styles: each batch trains on its loss divided by its own value, so that a style
    /// whose losses are larger does not set Adam's step sizes for the others.
    #[serde(default)]
    pub balance_styles: bool,
}

/// The fast recipe's defaults (measured: README, "Time to quality").
pub mod fast {
    /// Peak learning rate.
    pub const LR: f64 = 4e-3;
    /// Warm-up, as a fraction of the run.
    pub const WARMUP: f64 = 0.05;
    /// Decay after it: none, since a cosine decay lost to a constant rate on every style
    /// measured (README, "Time to quality").
    pub const DECAY: super::Decay = super::Decay::None;
    /// Fraction of the run on half-size crops.
    pub const PROGRESSIVE: f64 = 0.0;
    /// Adam's betas.
    pub const BETAS: [f64; 2] = [0.9, 0.999];
    /// Batch size.
    pub const BATCH_SIZE: usize = 4;
    /// Several styles' losses balanced (README, "Several styles in one network").
    pub const BALANCE_STYLES: bool = true;
}

/// File name of the shipped base network that the fast recipe starts from.
pub const BASE_FILE: &str = "base.safetensors";

/// The recipe's settings that the command line gives (each `None` when not given).
#[derive(Clone, Debug, Default)]
pub struct Given {
    pub name: Option<RecipeName>,
    pub warmup: Option<f64>,
    pub decay: Option<Decay>,
    pub progressive: Option<f64>,
    pub betas: Option<[f64; 2]>,
    /// `Some(None)`: `--base none`.
    pub base: Option<Option<PathBuf>>,
    pub balance_styles: Option<bool>,
}

impl Recipe {
    /// The PyTorch example's recipe.
    pub fn example() -> Self {
        Self {
            name: RecipeName::Example,
            warmup: 0.0,
            decay: Decay::None,
            progressive: 0.0,
            betas: [0.9, 0.999],
            base: None,
            balance_styles: false,
        }
    }

    /// A new run's recipe: the named one's defaults, with the settings given. The fast
    /// recipe's base network is found as the VGG16 weights are (see [`locate_base`]); where
    /// none is installed it starts from fresh weights, and says so.
    pub fn new(given: &Given) -> Result<Self> {
        let name = given.name.unwrap_or_default();
        let mut recipe = match name {
            RecipeName::Example => Self::example(),
            RecipeName::Fast => Self {
                name,
                warmup: fast::WARMUP,
                decay: fast::DECAY,
                progressive: fast::PROGRESSIVE,
                betas: fast::BETAS,
                base: None,
                balance_styles: fast::BALANCE_STYLES,
            },
        };
        recipe.warmup = given.warmup.unwrap_or(recipe.warmup);
        recipe.decay = given.decay.unwrap_or(recipe.decay);
        recipe.progressive = given.progressive.unwrap_or(recipe.progressive);
        recipe.betas = given.betas.unwrap_or(recipe.betas);
        recipe.balance_styles = given.balance_styles.unwrap_or(recipe.balance_styles);
        recipe.base = match &given.base {
            Some(base) => base.clone(),
            None if name == RecipeName::Fast => locate_base(),
            None => None,
        };
        recipe.validate()?;
        Ok(recipe)
    }

    /// The default learning rate of this recipe.
    pub fn default_lr(name: RecipeName) -> f64 {
        match name {
            RecipeName::Example => 1e-3,
            RecipeName::Fast => fast::LR,
        }
    }

    /// The default batch size of this recipe.
    pub fn default_batch_size(name: RecipeName) -> usize {
        match name {
            RecipeName::Example => 4,
            RecipeName::Fast => fast::BATCH_SIZE,
        }
    }

    fn validate(&self) -> Result<()> {
        for (flag, v) in [
            ("--warmup", self.warmup),
            ("--progressive", self.progressive),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{flag} must be a fraction of the run, from 0 to 1 (got {v})");
            }
        }
        if self.warmup + self.progressive > 0.0 && self.warmup >= 1.0 {
            bail!("--warmup must leave part of the run after it");
        }
        for b in self.betas {
            if !(0.0..1.0).contains(&b) {
                bail!("--betas must be two numbers in [0, 1), as 0.9,0.999 (got {b})");
            }
        }
        if let Some(base) = &self.base {
            if !base.is_file() {
                bail!(
                    "{}: base network not found (--base FILE, or --base none for fresh weights)",
                    base.display()
                );
            }
        }
        Ok(())
    }

    /// One line for the opening message: `fast (lr 0.004, warm-up 5%, cosine decay, from base.safetensors)`.
    pub fn describe(&self, lr: f64) -> String {
        let mut parts = vec![format!("lr {lr}")];
        if self.warmup > 0.0 {
            parts.push(format!("warm-up {}%", self.warmup * 100.0));
        }
        if self.decay != Decay::None {
            parts.push(format!("{} decay", self.decay));
        }
        if self.progressive > 0.0 {
            parts.push(format!(
                "half-size crops for the first {}%",
                self.progressive * 100.0
            ));
        }
        if self.betas != [0.9, 0.999] {
            parts.push(format!("betas {},{}", self.betas[0], self.betas[1]));
        }
        if self.balance_styles {
            parts.push("styles balanced".to_string());
        }
        if let Some(base) = &self.base {
            let name = base.file_name().unwrap_or_default().to_string_lossy();
            parts.push(format!("from {name}"));
        }
        format!("{} ({})", self.name, parts.join(", "))
    }
}

/// Parses `--betas B1,B2`.
pub fn parse_betas(s: &str) -> Result<[f64; 2], String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [a, b] = parts.as_slice() else {
        return Err(format!("expected two numbers as 0.9,0.999, got `{s}`"));
    };
    let num = |v: &str| v.trim().parse::<f64>().map_err(|e| format!("`{v}`: {e}"));
    Ok([num(a)?, num(b)?])
}

/// A `FILE|none` flag's value: `None` for `none` (a file of that name is `./none`).
pub fn file_or_none(path: &Path) -> Option<PathBuf> {
    (path != Path::new("none")).then(|| path.to_path_buf())
}

/// The shipped base network, `checkpoints/base.safetensors`: in the current folder, in this
/// repository, or in `$XDG_DATA_HOME/faststyle` (as the VGG16 weights are found). `None`, with
/// a note on stderr naming the places looked at, where there is none.
pub fn locate_base() -> Option<PathBuf> {
    let paths: Vec<PathBuf> = faststyle::locate::data_folders()
        .into_iter()
        .map(|folder| folder.join(BASE_FILE))
        .collect();
    if let Some(found) = paths.iter().find(|p| p.is_file()) {
        return Some(std::path::absolute(found).unwrap_or_else(|_| found.clone()));
    }
    let looked: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    eprintln!(
        "note: no base network for the fast recipe (looked at {}): starting from fresh \
         weights (--base FILE or --init MODEL give one)",
        looked.join(", ")
    );
    None
}

/// The style model's `recipe` metadata: the recipe's settings with the learning rate, batch
/// size, crop size, style size and augmentation that the run used, as JSON.
pub fn metadata(config: &Config) -> String {
    let mut value = serde_json::to_value(&config.recipe).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        if let Some(base) = &config.recipe.base {
            // The base's file name: a model file should not carry this machine's folders.
            let name = base.file_name().unwrap_or_default().to_string_lossy();
            map.insert("base".into(), name.into_owned().into());
        }
        map.insert("lr".into(), config.lr.into());
        map.insert("batch_size".into(), config.batch_size.into());
        map.insert("image_size".into(), config.image_size.into());
        map.insert("style_size".into(), config.style_size.into());
        map.insert("augment".into(), config.augment.into());
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_recipe_is_the_example_and_fast_is_the_default() {
        let example = Given {
            name: Some(RecipeName::Example),
            ..Default::default()
        };
        assert_eq!(Recipe::new(&example).unwrap(), Recipe::example());
        let default = Recipe::new(&Given::default()).unwrap();
        assert_eq!(default.name, RecipeName::Fast);
        assert_eq!(default.balance_styles, fast::BALANCE_STYLES);
        assert_eq!(Recipe::default_lr(RecipeName::Example), 1e-3);
        assert_eq!(Recipe::default_batch_size(RecipeName::Example), 4);
    }

    #[test]
    fn given_settings_replace_the_defaults_and_bad_ones_are_refused() {
        let given = Given {
            name: Some(RecipeName::Fast),
            warmup: Some(0.1),
            decay: Some(Decay::Linear),
            base: Some(None),
            ..Default::default()
        };
        let r = Recipe::new(&given).unwrap();
        assert_eq!(
            (r.warmup, r.decay, r.base.clone()),
            (0.1, Decay::Linear, None)
        );
        assert_eq!(r.betas, fast::BETAS);
        let bad = Given {
            warmup: Some(1.5),
            ..given.clone()
        };
        assert!(Recipe::new(&bad).is_err());
        assert_eq!(parse_betas("0.5,0.9").unwrap(), [0.5, 0.9]);
        assert!(parse_betas("0.5").is_err());
        assert_eq!(file_or_none(Path::new("none")), None);
        assert_eq!(
            file_or_none(Path::new("./none")),
            Some(PathBuf::from("./none"))
        );
    }
}
