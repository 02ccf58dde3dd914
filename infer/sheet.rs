//! `infer --sheet`: one picture holding a photo and the photo in every style of the model,
//! each tile labelled with its name (the photo's label is `original`).
use crate::model::Stylizer;
use crate::pipeline::Options;
use anyhow::{bail, Context, Result};
use faststyle::conditional::StyleMix;
use faststyle::imageio::{self, OutputFormat, Picture, WRITABLE_EXTENSIONS};
use faststyle::sheet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `NAME-sheet.EXT` beside the photo (PNG when its format cannot be written).
pub fn default_output(input: &Path) -> PathBuf {
    let named = imageio::output_name(input);
    let mut name: OsString = named.file_stem().unwrap_or_default().to_owned();
    name.push("-sheet.");
    name.push(named.extension().unwrap_or("png".as_ref()));
    input.with_file_name(name)
}

/// Makes the sheet of `input` and writes it to `output`.
pub fn run(input: &Path, output: &Path, model: &Stylizer, options: &Options) -> Result<()> {
    if !input.is_file() {
        bail!("--sheet {}: not an image file", input.display());
    }
    if OutputFormat::from_path(output).is_none() {
        bail!(
            "--output {}: cannot write this format (use one of the extensions {WRITABLE_EXTENSIONS})",
            output.display()
        );
    }
    if output.canonicalize().ok() == Some(input.canonicalize()?) {
        bail!(
            "--output {} is the input photo; refusing to overwrite it",
            output.display()
        );
    }
    let mut picture = imageio::read(input).with_context(|| input.display().to_string())?;
    if let Some(max) = options.max_size {
        picture = imageio::fit_within(picture, max)?;
    }
    let photo = picture.rgb;
    let mut tiles = vec![("original".to_string(), photo.clone())];
    for (i, name) in model.style_names().iter().enumerate() {
        let mut rgb = model.stylize_as(&photo, &StyleMix::One(i))?;
        if options.preserve_color {
            rgb = imageio::preserve_color(&rgb, &photo)?;
        }
        if options.strength < 1.0 {
            rgb = imageio::blend(&rgb, &photo, options.strength)?;
        }
        tiles.push((name.clone(), rgb));
    }
    let sheet = sheet::compose(&tiles, 0);
    let picture = Picture {
        rgb: sheet,
        alpha: None,
    };
    imageio::write(output, &picture, options.jpeg_quality)
        .map_err(|e| faststyle::fsutil::naming(e, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_names() {
        assert_eq!(
            default_output(Path::new("a/photo.jpg")),
            Path::new("a/photo-sheet.jpg")
        );
        // As for infer's outputs: a HEIC photo's sheet is a JPEG.
        assert_eq!(
            default_output(Path::new("a/photo.heic")),
            Path::new("a/photo-sheet.jpg")
        );
    }
}
