//! The query parameters of `/v1/stylize` and `/v1/live`, checked one by one so that a bad
//! value is a 400 naming the parameter, and an unknown one is not silently ignored.
use super::errors::ApiError;
use super::models::{Catalog, ModelInfo};
use faststyle::imageio::{OutputFormat, DEFAULT_JPEG_QUALITY};

/// What a client asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct StyleParams {
    /// Index of the model in the catalog.
    pub model: usize,
    /// `style=`: a style of a model with several (NAME, INDEX or NAME:W,NAME:W…).
    pub style: Option<String>,
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
}

/// Parameters that every stylizing route takes.
const KNOWN: [&str; 7] = [
    "model",
    "style",
    "strength",
    "preserve_color",
    "max_size",
    "format",
    "quality",
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
    let style = get("style").map(str::to_string);
    check_style(catalog.info(model), style.as_deref())?;
    let strength = match get("strength") {
        None => 1.0,
        Some(v) => match v.parse::<f32>() {
            Ok(s) if (0.0..=1.0).contains(&s) => s,
            _ => return Err(bad("strength", v, "a number from 0 to 1")),
        },
    };
    let preserve_color = match get("preserve_color") {
        None => false,
        Some("true" | "1" | "yes" | "on") => true,
        Some("false" | "0" | "no" | "off") => false,
        Some(v) => return Err(bad("preserve_color", v, "true or false")),
    };
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
        style,
        strength,
        preserve_color,
        max_size,
        format,
        quality,
    })
}

fn bad(key: &str, value: &str, expected: &str) -> ApiError {
    ApiError::bad_request(format!("parameter `{key}`: `{value}` is not {expected}"))
}

/// Checks `style=` against the model's styles. Only models with several styles take it; the
/// choice itself is handed to the worker with the job.
fn check_style(info: &ModelInfo, style: Option<&str>) -> Result<(), ApiError> {
    match style {
        None => Ok(()),
        Some(s) if info.styles.is_empty() => Err(ApiError::bad_request(format!(
            "parameter `style`: model `{}` holds one style; `{s}` applies only to models with several",
            info.name
        ))),
        Some(_) => Ok(()),
    }
}
