//! The query parameters of `/v1/stylize` and `/v1/live`, checked one by one so that a bad
//! value is a 400 naming the parameter, and an unknown one is not silently ignored.
use super::errors::ApiError;
use super::models::Catalog;
use faststyle::conditional::StyleMix;
use faststyle::imageio::{OutputFormat, DEFAULT_JPEG_QUALITY};
use faststyle::styles::{self, StyleChoice};

/// What a client asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct StyleParams {
    /// Index of the model in the catalog.
    pub model: usize,
    /// `style=` as written (NAME, INDEX or NAME:W,NAME:W…), if given.
    pub choice: Option<StyleChoice>,
    /// What the choice means for the model: the style or blend that the network applies.
    pub style: StyleMix,
    /// Blend with the original, 0…1.
    pub strength: f32,
    /// Keep the original's colours.
    pub preserve_color: bool,
    /// Longer side limit, applied before the network.
    pub max_size: Option<u32>,
    /// Output format; `None`: the input's where it can be written, else PNG.
    pub format: Option<OutputFormat>,
    /// JPEG quality.
    pub quality: u8,
    /// Keep the upload's EXIF and XMP in the answer (by default they are stripped: a
    /// client's camera and GPS position should not travel further unasked).
    pub keep_metadata: bool,
}

/// Parameters that every stylizing route takes.
const KNOWN: [&str; 8] = [
    "model",
    "style",
    "strength",
    "preserve_color",
    "max_size",
    "format",
    "quality",
    "keep_metadata",
];

/// Parses the query pairs; `extra` names further parameters that the route reads itself.
pub fn parse(
    pairs: &[(String, String)],
    catalog: &Catalog,
    extra: &[&str],
) -> Result<StyleParams, ApiError> {
    for (key, _) in pairs {
        if !KNOWN.contains(&key.as_str()) && !extra.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown parameter `{key}` (known: {})",
                KNOWN.join(", ")
            )));
        }
    }
    let get = |key: &str| -> Option<&str> {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let name = get("model").ok_or_else(|| {
        ApiError::bad_request("missing parameter `model` (the names are at /v1/models)")
    })?;
    // Looked up among the loaded models only: a name never becomes a path.
    let model = catalog
        .find(name)
        .ok_or_else(|| ApiError::not_found(format!("no model named `{name}` (see /v1/models)")))?;
    let (choice, style) = style(catalog, model, get("style"))?;
    let strength = match get("strength") {
        None => 1.0,
        Some(v) => match v.parse::<f32>() {
            Ok(s) if (0.0..=1.0).contains(&s) => s,
            _ => return Err(bad("strength", v, "a number from 0 to 1")),
        },
    };
    let preserve_color = flag(get("preserve_color"), "preserve_color")?;
    let keep_metadata = flag(get("keep_metadata"), "keep_metadata")?;
    let max_size = match get("max_size") {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(bad("max_size", v, "a whole number of pixels, at least 1")),
        },
    };
    let format = match get("format") {
        None => None,
        Some(v) => Some(OutputFormat::from_extension(v).ok_or_else(|| {
            bad(
                "format",
                v,
                "png, jpeg or webp (or bmp, tiff, gif, tga, qoi, ppm)",
            )
        })?),
    };
    let quality = match get("quality") {
        None => DEFAULT_JPEG_QUALITY,
        Some(v) => match v.parse::<u8>() {
            Ok(q) if (1..=100).contains(&q) => q,
            _ => return Err(bad("quality", v, "a whole number from 1 to 100")),
        },
    };
    Ok(StyleParams {
        model,
        choice,
        style,
        strength,
        preserve_color,
        max_size,
        format,
        quality,
        keep_metadata,
    })
}

/// A true/false parameter, false when absent.
fn flag(value: Option<&str>, key: &str) -> Result<bool, ApiError> {
    match value {
        None => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(v) => Err(bad(key, v, "true or false")),
    }
}

fn bad(key: &str, value: &str, expected: &str) -> ApiError {
    ApiError::bad_request(format!("parameter `{key}`: `{value}` is not {expected}"))
}

/// Reads `style=` as `infer --style` does and resolves it against the model's styles, with
/// `infer`'s rule: a one-style model needs no choice (and takes only its own name or 0), a
/// model with several needs one. Errors list the model's styles.
fn style(
    catalog: &Catalog,
    model: usize,
    value: Option<&str>,
) -> Result<(Option<StyleChoice>, StyleMix), ApiError> {
    let name = &catalog.info(model).name;
    let names = catalog.style_names(model);
    let listing = styles::listing(names);
    let Some(value) = value else {
        if names.len() > 1 {
            return Err(ApiError::bad_request(format!(
                "model `{name}` holds {} styles; choose one with style=NAME|INDEX, or blend them \
                 with style=NAME:W,NAME:W (its styles: {listing})",
                names.len()
            )));
        }
        return Ok((None, StyleMix::One(0)));
    };
    let refused = |reason: String| {
        // The listing is added where the reason does not already give it.
        let reason = if reason.contains("its styles:") {
            reason
        } else {
            format!("{reason} (its styles: {listing})")
        };
        ApiError::bad_request(format!("parameter `style`: model `{name}`: {reason}"))
    };
    let choice: StyleChoice = value.parse().map_err(&refused)?;
    // The same resolution as `Stylizer::resolve`, without the file's path, which clients
    // are not told.
    let mix = styles::select(Some(&choice), names).map_err(|e| refused(e.to_string()))?;
    Ok((Some(choice), mix))
}
