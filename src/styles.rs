//! Choosing among a model's styles by name: `NAME`, `INDEX`, or a blend `NAME:W,NAME:W…`,
//! as `infer --style` and the server's `style=` take it, resolved against the model's names.
use crate::conditional::StyleMix;
use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;

/// A style choice as a user writes it, before it meets a model.
#[derive(Clone, Debug, PartialEq)]
pub enum StyleChoice {
    /// One style, by name or by index.
    Pick(String),
    /// A blend: (name or index, weight) pairs; the weights are normalised to sum 1.
    Blend(Vec<(String, f64)>),
}

/// Characters a style name may not hold: they separate the parts of a blend.
pub const RESERVED: [char; 2] = [',', ':'];

/// Checks that a style name can be written in a choice (not empty, no `,` or `:`).
pub fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.trim() != name {
        bail!("style name `{name}` must be non-empty without surrounding spaces");
    }
    if name.contains(RESERVED) {
        bail!("style name `{name}` must not contain `,` or `:` (they separate a blend's parts)");
    }
    Ok(())
}

impl FromStr for StyleChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty style (expected NAME, INDEX or NAME:W,NAME:W…)".into());
        }
        if !s.contains(RESERVED) {
            return Ok(Self::Pick(s.to_string()));
        }
        let mut parts = Vec::new();
        for part in s.split(',') {
            let (name, weight) = match part.split_once(':') {
                Some((name, w)) => {
                    let weight: f64 = w
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{part}`: weight `{}` is not a number", w.trim()))?;
                    (name.trim(), weight)
                }
                // `a,b` blends equally.
                None => (part.trim(), 1.0),
            };
            if name.is_empty() {
                return Err(format!("`{part}`: no style name before the weight"));
            }
            if !(weight >= 0.0 && weight.is_finite()) {
                return Err(format!("`{part}`: a weight must be a finite number ≥ 0"));
            }
            if parts.iter().any(|(n, _)| n == name) {
                return Err(format!("style `{name}` is named twice"));
            }
            parts.push((name.to_string(), weight));
        }
        if parts.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return Err("the blend's weights are all zero".into());
        }
        Ok(Self::Blend(parts))
    }
}

impl fmt::Display for StyleChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pick(name) => write!(f, "{name}"),
            Self::Blend(parts) => {
                let text: Vec<String> = parts.iter().map(|(n, w)| format!("{n}:{w}")).collect();
                write!(f, "{}", text.join(","))
            }
        }
    }
}

/// The styles of a model, numbered, for messages: `0 udnie, 1 starry-night`.
pub fn listing(names: &[String]) -> String {
    let items: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i} {n}"))
        .collect();
    items.join(", ")
}

/// The index of a style named by its name or, failing that, by its index.
fn index_of(names: &[String], key: &str) -> Result<usize> {
    if let Some(i) = names.iter().position(|n| n == key) {
        return Ok(i);
    }
    match key.parse::<usize>() {
        Ok(i) if i < names.len() => Ok(i),
        _ => bail!(
            "no style `{key}` in this model (its styles: {})",
            listing(names)
        ),
    }
}

impl StyleChoice {
    /// What the network applies for this choice, given the model's style names in row order.
    /// A blend whose weights leave a single style is that style alone, exactly.
    pub fn resolve(&self, names: &[String]) -> Result<StyleMix> {
        match self {
            Self::Pick(key) => Ok(StyleMix::One(index_of(names, key)?)),
            Self::Blend(parts) => {
                let mut weights = vec![0.0; names.len()];
                for (key, w) in parts {
                    let i = index_of(names, key)?;
                    if weights[i] != 0.0 {
                        bail!("style `{}` is named twice in the blend", names[i]);
                    }
                    weights[i] = *w;
                }
                let total: f64 = weights.iter().sum();
                let used: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
                if let [only] = used.as_slice() {
                    return Ok(StyleMix::One(*only));
                }
                Ok(StyleMix::Blend(weights.iter().map(|w| w / total).collect()))
            }
        }
    }
}

/// The style a model applies when the user chose `choice` (or nothing): a one-style model
/// needs no choice, a multi-style model does. Errors are one line listing the styles.
pub fn select(choice: Option<&StyleChoice>, names: &[String]) -> Result<StyleMix> {
    match choice {
        Some(c) => c.resolve(names),
        None if names.len() <= 1 => Ok(StyleMix::One(0)),
        None => bail!(
            "this model holds {} styles; choose one with --style NAME|INDEX, or blend them with --style NAME:W,NAME:W (its styles: {})",
            names.len(),
            listing(names)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["udnie", "starry-night", "7"].map(String::from).to_vec()
    }

    #[test]
    fn picks_by_name_then_index() {
        let n = names();
        let pick = |s: &str| s.parse::<StyleChoice>().unwrap().resolve(&n).unwrap();
        assert_eq!(pick("starry-night"), StyleMix::One(1));
        assert_eq!(pick("0"), StyleMix::One(0));
        // A style named `7` wins over index 7 (which does not exist anyway) …
        assert_eq!(pick("7"), StyleMix::One(2));
        // … and index 2 is that style too.
        assert_eq!(pick(" 2 "), StyleMix::One(2));
        let err = "3".parse::<StyleChoice>().unwrap().resolve(&n).unwrap_err();
        assert!(
            err.to_string().contains("0 udnie, 1 starry-night, 2 7"),
            "{err}"
        );
    }

    #[test]
    fn blends_normalise_and_a_lone_weight_is_a_pick() {
        let n = names();
        let mix = |s: &str| s.parse::<StyleChoice>().unwrap().resolve(&n).unwrap();
        assert_eq!(
            mix("udnie:3,starry-night:1"),
            StyleMix::Blend(vec![0.75, 0.25, 0.0])
        );
        assert_eq!(mix("udnie,1"), StyleMix::Blend(vec![0.5, 0.5, 0.0]));
        assert_eq!(mix("udnie:0,starry-night:2"), StyleMix::One(1));
        assert_eq!(mix("udnie:0.5"), StyleMix::One(0));
    }

    #[test]
    fn bad_choices_are_refused() {
        for bad in ["", "a:x", "a:-1", ":1", "a:1,a:2", "a:0,b:0", "a:inf"] {
            assert!(bad.parse::<StyleChoice>().is_err(), "{bad}");
        }
        // The same style by name and by index.
        let c: StyleChoice = "udnie:1,0:1".parse().unwrap();
        assert!(c.resolve(&names()).is_err());
    }

    #[test]
    fn one_style_models_need_no_choice_and_many_do() {
        assert_eq!(
            select(None, &["udnie".to_string()]).unwrap(),
            StyleMix::One(0)
        );
        let err = select(None, &names()).unwrap_err().to_string();
        assert!(
            err.contains("3 styles") && err.contains("1 starry-night"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn names_with_separators_are_refused() {
        assert!(check_name("starry-night").is_ok());
        for bad in ["a,b", "a:b", "", " a"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
