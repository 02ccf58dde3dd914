//! Resuming a run: recipe flags given again must repeat the values that the run recorded.
use anyhow::{bail, Result};
use faststyle::fsutil;
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// Accepts a flag that is absent or repeats the recorded value; refuses a changed one.
pub fn same<T: PartialEq + Display>(flag: &str, recorded: &T, given: Option<&T>) -> Result<()> {
    match given {
        Some(g) if g != recorded => changed(flag, recorded, g),
        _ => Ok(()),
    }
}

/// [`same`] for an optional setting (recorded as absent: "none").
pub fn same_opt<T: PartialEq + Display>(
    flag: &str,
    recorded: Option<T>,
    given: Option<T>,
) -> Result<()> {
    match (recorded, given) {
        (Some(r), Some(g)) if r != g => changed(flag, &r, &g),
        (None, Some(g)) => changed(flag, &"none", &g),
        _ => Ok(()),
    }
}

/// [`same`] for a path: the same file, however it is spelled (relative, via a link).
pub fn same_path(flag: &str, recorded: &Path, given: Option<&Path>) -> Result<()> {
    match given {
        Some(g) if !fsutil::same_file(recorded, g) => {
            changed(flag, &recorded.display(), &g.display())
        }
        _ => Ok(()),
    }
}

/// [`same_path`] for an optional path.
pub fn same_path_opt(flag: &str, recorded: Option<&Path>, given: Option<&Path>) -> Result<()> {
    match (recorded, given) {
        (Some(r), g) => same_path(flag, r, g),
        (None, Some(g)) => changed(flag, &"none", &g.display()),
        (None, None) => Ok(()),
    }
}

/// [`same_path`] for a flag given as `FILE|none` (`None`: `none`, on either side).
pub fn same_or_none(flag: &str, recorded: Option<&Path>, given: Option<&Path>) -> Result<()> {
    match (recorded, given) {
        (Some(r), None) => changed(flag, &r.display(), &"none"),
        (None, Some(g)) => changed(flag, &"none", &g.display()),
        (Some(r), Some(g)) => same_path(flag, r, Some(g)),
        (None, None) => Ok(()),
    }
}

fn changed(flag: &str, recorded: &dyn Display, given: &dyn Display) -> Result<()> {
    bail!(
        "{flag} cannot change when resuming: the run recorded {recorded}, this command gives \
         {given} (leave it out to keep the recipe, or start a new run with another --name)"
    )
}

/// [`same_path`] for a list of paths (given empty: kept); the same files in the same order.
pub fn same_paths(flag: &str, recorded: &[PathBuf], given: &[PathBuf]) -> Result<()> {
    let same = given.is_empty()
        || (recorded.len() == given.len()
            && recorded
                .iter()
                .zip(given)
                .all(|(r, g)| fsutil::same_file(r, g)));
    if same {
        return Ok(());
    }
    let list = |paths: &[PathBuf]| match paths {
        [] => "none".to_string(),
        _ => paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    changed(flag, &list(recorded), &list(given))
}
