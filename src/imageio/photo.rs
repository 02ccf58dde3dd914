//! The two pictures of this module: a [`Photo`] as its file holds it, and the [`Picture`] that
//! the network sees.
use super::colour::{self, Profile};
use super::encode::OutputFormat;
use super::metadata::Metadata;
use anyhow::Result;
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

/// RGB at 16 bits per channel.
pub type Rgb16Image = ImageBuffer<Rgb<u16>, Vec<u16>>;
/// One channel (alpha) at 16 bits.
pub type Gray16Image = ImageBuffer<Luma<u16>, Vec<u16>>;

/// An upright picture in sRGB at 8 bits per channel, what the network takes and gives, with
/// its alpha channel when the file had one.
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    /// Colour, 8 bits per channel, sRGB.
    pub rgb: RgbImage,
    /// Opacity, same size as `rgb`; `None` for opaque formats.
    pub alpha: Option<GrayImage>,
}

impl Picture {
    /// Width and height in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        self.rgb.dimensions()
    }
}

/// Bits per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// 8 bits.
    Eight,
    /// 16 bits (also what 10- and 12-bit HEIF become).
    Sixteen,
}

/// RGB pixels at either depth.
#[derive(Clone, Debug, PartialEq)]
pub enum Colour {
    /// 8 bits per channel.
    Eight(RgbImage),
    /// 16 bits per channel.
    Sixteen(Rgb16Image),
}

/// Widens 8 bits to 16 exactly (v · 257: 255 becomes 65535).
pub fn widen(v: u8) -> u16 {
    u16::from(v) * 257
}

/// Narrows 16 bits to 8, rounding to nearest.
pub fn narrow(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

impl Colour {
    /// Width and height in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Self::Eight(i) => i.dimensions(),
            Self::Sixteen(i) => i.dimensions(),
        }
    }

    /// Its depth.
    pub fn depth(&self) -> Depth {
        match self {
            Self::Eight(_) => Depth::Eight,
            Self::Sixteen(_) => Depth::Sixteen,
        }
    }

    /// The same pixels at `depth` (unchanged when it already is).
    pub fn to_depth(self, depth: Depth) -> Self {
        match (self, depth) {
            (Self::Eight(i), Depth::Sixteen) => {
                let (w, h) = i.dimensions();
                let data = i.as_raw().iter().map(|&v| widen(v)).collect();
                Self::Sixteen(Rgb16Image::from_raw(w, h, data).expect("same size"))
            }
            (Self::Sixteen(i), Depth::Eight) => {
                let (w, h) = i.dimensions();
                let data = i.as_raw().iter().map(|&v| narrow(v)).collect();
                Self::Eight(RgbImage::from_raw(w, h, data).expect("same size"))
            }
            (same, _) => same,
        }
    }
}

/// An alpha channel at either depth.
#[derive(Clone, Debug, PartialEq)]
pub enum Alpha {
    /// 8 bits.
    Eight(GrayImage),
    /// 16 bits.
    Sixteen(Gray16Image),
}

impl Alpha {
    /// The same opacity at `depth`.
    pub fn to_depth(self, depth: Depth) -> Self {
        match (self, depth) {
            (Self::Eight(a), Depth::Sixteen) => {
                let (w, h) = a.dimensions();
                let data = a.as_raw().iter().map(|&v| widen(v)).collect();
                Self::Sixteen(Gray16Image::from_raw(w, h, data).expect("same size"))
            }
            (Self::Sixteen(a), Depth::Eight) => {
                let (w, h) = a.dimensions();
                let data = a.as_raw().iter().map(|&v| narrow(v)).collect();
                Self::Eight(GrayImage::from_raw(w, h, data).expect("same size"))
            }
            (same, _) => same,
        }
    }

    /// At 8 bits.
    pub fn into_eight(self) -> GrayImage {
        match self.to_depth(Depth::Eight) {
            Self::Eight(a) => a,
            Self::Sixteen(_) => unreachable!("converted to 8 bits"),
        }
    }
}

/// A photo as its file holds it: upright pixels at the file's depth in the file's colour
/// space, with its colour profile and its metadata.
#[derive(Clone, Debug)]
pub struct Photo {
    /// Colour as stored (orientation applied).
    pub colour: Colour,
    /// Opacity, when the file has it.
    pub alpha: Option<Alpha>,
    /// The colour space of `colour`; `None` is sRGB (an untagged file).
    pub profile: Option<Profile>,
    /// EXIF and XMP, with the orientation reset to upright (it has been applied).
    pub metadata: Metadata,
    /// The format its stylized version is written in when none is asked for: its own where
    /// it can be written, JPEG for HEIF and AVIF; `None` otherwise (PNG).
    pub default_format: Option<OutputFormat>,
}

impl Photo {
    /// A photo of an sRGB picture, without metadata.
    pub fn from_picture(picture: Picture) -> Self {
        Self {
            colour: Colour::Eight(picture.rgb),
            alpha: picture.alpha.map(Alpha::Eight),
            profile: None,
            metadata: Metadata::default(),
            default_format: None,
        }
    }

    /// Width and height in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        self.colour.dimensions()
    }

    /// The network's input: the colour in sRGB at 8 bits. `None` when `colour` already is
    /// exactly that (an untagged 8-bit photo), so that no copy is made.
    pub fn srgb_copy(&self) -> Result<Option<RgbImage>> {
        match (&self.colour, &self.profile) {
            (Colour::Eight(_), None) => Ok(None),
            (colour, profile) => colour::to_srgb8(colour, profile.as_ref()).map(Some),
        }
    }

    /// The photo as the network's picture: sRGB, 8 bits.
    pub fn into_picture(self) -> Result<Picture> {
        let rgb = match self.srgb_copy()? {
            Some(rgb) => rgb,
            None => match self.colour {
                Colour::Eight(rgb) => rgb,
                Colour::Sixteen(_) => unreachable!("a 16-bit photo is always converted"),
            },
        };
        Ok(Picture {
            rgb,
            alpha: self.alpha.map(Alpha::into_eight),
        })
    }
}
