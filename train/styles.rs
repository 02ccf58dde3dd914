//! Several styles in one run: the style images the command line names, the network's style
//! names, which styles a run trains (all of them, or only those `--add-style` adds), and
//! which style each batch trains.
use crate::args::Config;
use anyhow::{bail, Context, Result};
use faststyle::checkpoint::{self, ModelFile};
use faststyle::transformer::TransformerNet;
use faststyle::{imageio, styles};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// The default learning rate of `--add-style`. Scales and shifts alone, moved by about the
/// learning rate per Adam step, barely move at 1e-3; measured at 128 px, a new style's
/// held-out losses fell about four times as fast at 1e-1 as at 3e-2 (README, "Several styles
/// in one network").
pub const ADD_STYLE_LR: f64 = 1e-1;

/// The style images that `--style` names: each file as is, each folder's images sorted by name.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for path in paths {
        if !path.is_dir() {
            images.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot read folder", path.display()))?
        {
            let p = entry
                .with_context(|| format!("{}: cannot read folder", path.display()))?
                .path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if p.is_file() && !hidden && imageio::has_image_extension(&p) {
                found.push(p);
            }
        }
        if found.is_empty() {
            bail!("--style {}: no image files in this folder", path.display());
        }
        found.sort();
        images.extend(found);
    }
    Ok(images)
}

/// A style's name: its image's file stem.
pub fn name_of(image: &Path) -> String {
    image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The default run name: the one style's name, a lone folder's name, or the style names
/// joined by `+` (after the `--init` model's name when adding styles).
pub fn default_run_name(style: &[PathBuf], init: Option<&Path>, add: &[PathBuf]) -> String {
    if let [folder] = style {
        if folder.is_dir() {
            return name_of(folder);
        }
    }
    let base = init.filter(|_| !add.is_empty()).map(name_of);
    let names: Vec<String> = base
        .into_iter()
        .chain(style.iter().chain(add).map(|p| name_of(p)))
        .collect();
    match names.join("+") {
        name if name.is_empty() => "style".into(),
        name => name,
    }
}

/// Reads `style` from a recorded configuration: a list of paths, or the single path that
/// runs recorded before a network could hold several styles.
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Paths {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match Paths::deserialize(d)? {
        Paths::One(p) => vec![p],
        Paths::Many(v) => v,
    })
}

/// The styles of a run.
pub struct Styles {
    /// Every style the network holds, in row order.
    pub names: Vec<String>,
    /// The styles this run trains: (row, style image), in turn.
    pub trained: Vec<(usize, PathBuf)>,
    /// Whether the run trains only added styles over a frozen network.
    pub adding: bool,
}

impl Styles {
    /// The styles of a run of `config`; `base` names the styles of the model that
    /// `--add-style` adds to.
    pub fn plan(config: &Config, base: Option<&[String]>) -> Result<Self> {
        let adding = !config.add_style.is_empty();
        let images = if adding {
            &config.add_style
        } else {
            &config.style
        };
        let mut names: Vec<String> = match base {
            Some(base) if adding => base.to_vec(),
            _ => Vec::new(),
        };
        let first = names.len();
        for image in images {
            let name = name_of(image);
            // One style's name is only recorded; several are typed back to pick one.
            if images.len() + first > 1 {
                styles::check_name(&name)
                    .with_context(|| format!("{}: rename the style image", image.display()))?;
            }
            if names.contains(&name) {
                bail!(
                    "{}: a style named `{name}` is already in the network; rename the image",
                    image.display()
                );
            }
            names.push(name);
        }
        let trained = images
            .iter()
            .enumerate()
            .map(|(i, p)| (first + i, p.clone()))
            .collect();
        Ok(Self {
            names,
            trained,
            adding,
        })
    }

    /// Which of the trained styles (an index into `trained`) the batch of 0-based step
    /// `step` trains: each style once per round of as many steps as styles, in an order
    /// shuffled per round from the seed, so that a resumed run trains the same ones.
    pub fn turn(&self, seed: u64, step: u64) -> usize {
        let n = self.trained.len() as u64;
        if n <= 1 {
            return 0;
        }
        let mut order: Vec<usize> = (0..n as usize).collect();
        // Another generator than the data order's (same seed, streams by epoch).
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7374_796c_6573);
        rng.set_stream(step / n);
        order.shuffle(&mut rng);
        order[(step % n) as usize]
    }
}

impl Styles {
    /// The styles for the opening line: `udnie`, or `2 styles: udnie, starry-night`, or
    /// `adding starry-night to udnie`.
    pub fn describe(&self) -> String {
        let trained: Vec<&str> = self
            .trained
            .iter()
            .map(|(row, _)| self.names[*row].as_str())
            .collect();
        if self.adding {
            let base = &self.names[..self.trained[0].0];
            format!("adding {} to {}", trained.join(", "), base.join(", "))
        } else if trained.len() == 1 {
            trained[0].to_string()
        } else {
            format!("{} styles: {}", trained.len(), trained.join(", "))
        }
    }
}

/// The run's network on `device` with its styles and weights: the run's own model when
/// resuming (`resume_from`), else `--init`'s (widened by the added styles), else the recipe's
/// base network (each style's rows starting as the base's), else fresh from the seed already
/// set. Adding styles freezes everything but the instance norms.
pub fn network(
    config: &Config,
    resume_from: Option<&Path>,
    device: Device,
) -> Result<(VarStore, TransformerNet, Styles)> {
    let from_base = resume_from.is_none() && config.init.is_none();
    let source = resume_from.or(config.init.as_deref()).or(config
        .recipe
        .base
        .as_deref()
        .filter(|_| from_base));
    let model = source.map(ModelFile::read).transpose()?;
    let adding = !config.add_style.is_empty();
    let base = match (&model, resume_from) {
        (Some(m), Some(path)) if adding => {
            let kept = m.styles.len().checked_sub(config.add_style.len());
            Some(
                &m.styles[..kept.filter(|&n| n > 0).with_context(|| {
                    format!("{}: fewer styles than the run adds", path.display())
                })?],
            )
        }
        (Some(m), _) => Some(m.styles.as_slice()),
        (None, _) => None,
    };
    let styles = Styles::plan(config, base)?;
    let vs = VarStore::new(device);
    let net = TransformerNet::with_styles(&vs.root(), styles.names.len());
    if let (Some(model), Some(path)) = (&model, source) {
        let widen_base = from_base && model.styles.len() < styles.names.len();
        if (adding && resume_from.is_none()) || widen_base {
            model.load_into_wider(&vs, path)?;
        } else {
            if model.styles.len() != styles.names.len() {
                bail!(
                    "{}: holds {} style(s) but this run trains {} (to add styles to a model, use --init MODEL --add-style IMAGE)",
                    path.display(),
                    model.styles.len(),
                    styles.names.len()
                );
            }
            model.file.load_into(&vs, path)?;
        }
    }
    if adding {
        for (_, var) in vs.variables() {
            // Scales and shifts are the only 2-D variables of a multi-style network.
            if var.dim() != 2 {
                let _ = var.set_requires_grad(false);
            }
        }
    }
    Ok((vs, net, styles))
}

/// The variables that training updates (all but the frozen ones), sorted by name.
pub fn trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
    checkpoint::variables(vs)
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_style_trains_once_per_round() {
        let styles = Styles {
            names: vec!["a".into(), "b".into(), "c".into()],
            trained: (0..3)
                .map(|i| (i, PathBuf::from(format!("{i}.jpg"))))
                .collect(),
            adding: false,
        };
        let mut rounds = Vec::new();
        for round in 0..20u64 {
            let mut seen: Vec<usize> = (0..3).map(|k| styles.turn(42, round * 3 + k)).collect();
            rounds.push(seen.clone());
            seen.sort();
            assert_eq!(seen, vec![0, 1, 2]);
        }
        // Shuffled: not the same order every round.
        assert!(rounds.iter().any(|r| r != &rounds[0]));
        assert_eq!(styles.turn(42, 7), styles.turn(42, 7));
    }

    #[test]
    fn recorded_styles_read_as_one_path_or_a_list() {
        #[derive(Deserialize)]
        struct Recorded {
            #[serde(deserialize_with = "one_or_many")]
            style: Vec<PathBuf>,
        }
        let read = |json: &str| serde_json::from_str::<Recorded>(json).unwrap().style;
        assert_eq!(read(r#"{"style": "a.jpg"}"#), [PathBuf::from("a.jpg")]);
        assert_eq!(
            read(r#"{"style": ["a.jpg", "b.png"]}"#),
            ["a.jpg", "b.png"].map(PathBuf::from)
        );
    }

    #[test]
    fn default_names() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(default_run_name(&[p("a/udnie.jpg")], None, &[]), "udnie");
        assert_eq!(
            default_run_name(&[p("udnie.jpg"), p("x/starry.png")], None, &[]),
            "udnie+starry"
        );
        assert_eq!(
            default_run_name(&[], Some(Path::new("m/two.safetensors")), &[p("c.jpg")]),
            "two+c"
        );
    }
}
