//! EXIF and XMP carried from a photo to its stylized version: the orientation reset to
//! upright (the pixels already are), the EXIF thumbnail (a small copy of the unstylized
//! photo, which file browsers would show) dropped, everything else as it was.
use image::metadata::Orientation;

/// A photo's EXIF (a TIFF structure, without JPEG's `Exif\0\0` prefix) and XMP (an XML
/// packet), as they go into an output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// EXIF: camera, date, exposure, GPS…
    pub exif: Option<Vec<u8>>,
    /// XMP.
    pub xmp: Option<Vec<u8>>,
}

impl Metadata {
    /// The metadata of a photo whose orientation has been applied to its pixels.
    pub fn upright(exif: Option<Vec<u8>>, xmp: Option<Vec<u8>>) -> Self {
        let exif = exif.filter(|e| is_tiff(e)).map(|mut e| {
            let _ = Orientation::remove_from_exif_chunk(&mut e);
            drop_thumbnail(&mut e);
            e
        });
        let xmp = xmp.filter(|x| !x.is_empty()).map(|x| upright_xmp(&x));
        Self { exif, xmp }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.exif.is_none() && self.xmp.is_none()
    }
}

fn is_tiff(exif: &[u8]) -> bool {
    exif.starts_with(b"II*\0") || exif.starts_with(b"MM\0*")
}

/// Unlinks IFD1 (the thumbnail's directory) from IFD0, so that readers see no thumbnail.
fn drop_thumbnail(exif: &mut [u8]) {
    let big = exif.starts_with(b"MM");
    let u16_at = |b: &[u8], i: usize| -> Option<usize> {
        let s: [u8; 2] = b.get(i..i + 2)?.try_into().ok()?;
        Some(usize::from(if big {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        }))
    };
    let u32_at = |b: &[u8], i: usize| -> Option<usize> {
        let s: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        } as usize)
    };
    let Some(ifd0) = u32_at(exif, 4) else { return };
    let Some(entries) = u16_at(exif, ifd0) else {
        return;
    };
    let next = ifd0 + 2 + 12 * entries;
    if let Some(link) = exif.get_mut(next..next + 4) {
        link.fill(0);
    }
}

/// XMP with `tiff:Orientation` (attribute or element form) set to 1.
fn upright_xmp(xmp: &[u8]) -> Vec<u8> {
    let mut out = xmp.to_vec();
    for (open, close) in [
        (&b"tiff:Orientation=\""[..], &b"\""[..]),
        (&b"tiff:Orientation='"[..], &b"'"[..]),
        (&b"<tiff:Orientation>"[..], &b"<"[..]),
    ] {
        let mut from = 0;
        while let Some(at) = find(&out[from..], open) {
            let start = from + at + open.len();
            let Some(len) = find(&out[start..], close) else {
                break;
            };
            out.splice(start..start + len, *b"1");
            from = start + 1;
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The APP1 signature of XMP in JPEG.
const JPEG_XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";

/// A JPEG with an XMP segment added after its leading APPn segments (JFIF, EXIF, ICC), as
/// readers expect it. XMP over one segment's 64 KiB (extended XMP) is left out.
pub fn jpeg_with_xmp(jpeg: Vec<u8>, xmp: &[u8]) -> Vec<u8> {
    let len = JPEG_XMP.len() + xmp.len() + 2;
    if len > usize::from(u16::MAX) || !jpeg.starts_with(&[0xFF, 0xD8]) {
        return jpeg;
    }
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF && (0xE0..=0xEF).contains(&jpeg[at + 1]) {
        at += 2 + usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
    }
    let at = at.min(jpeg.len());
    let mut out = Vec::with_capacity(jpeg.len() + len + 2);
    out.extend_from_slice(&jpeg[..at]);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(JPEG_XMP);
    out.extend_from_slice(xmp);
    out.extend_from_slice(&jpeg[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian EXIF block: IFD0 with Make and Orientation, linked to an IFD1.
    fn exif() -> Vec<u8> {
        let mut v = b"II*\0\x08\0\0\0".to_vec();
        v.extend_from_slice(&2u16.to_le_bytes());
        // Make: ASCII, 4 bytes "Abc\0" inline.
        v.extend_from_slice(&0x010Fu16.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(b"Abc\0");
        // Orientation 6.
        v.extend_from_slice(&0x0112u16.to_le_bytes());
        v.extend_from_slice(&3u16.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&[6, 0, 0, 0]);
        // Next IFD at 38: an empty IFD1.
        v.extend_from_slice(&38u32.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn orientation_reset_and_thumbnail_unlinked() {
        let m = Metadata::upright(Some(exif()), None);
        let e = m.exif.unwrap();
        assert_eq!(
            Orientation::from_exif_chunk(&e),
            Some(Orientation::NoTransforms)
        );
        assert_eq!(&e[8 + 2 + 8..8 + 2 + 12], b"Abc\0", "other tags kept");
        assert_eq!(&e[8 + 2 + 24..8 + 2 + 28], &[0, 0, 0, 0], "IFD1 unlinked");
        // Not EXIF at all: dropped rather than written as garbage.
        assert!(Metadata::upright(Some(b"junk".to_vec()), None)
            .exif
            .is_none());
    }

    #[test]
    fn xmp_orientation_reset_in_both_forms() {
        let x = br#"<x tiff:Orientation="8" a="1"/><tiff:Orientation>6</tiff:Orientation>"#;
        let out = upright_xmp(x);
        assert_eq!(
            out,
            br#"<x tiff:Orientation="1" a="1"/><tiff:Orientation>1</tiff:Orientation>"#
        );
    }

    #[test]
    fn xmp_segment_goes_after_the_app_segments() {
        // SOI, APP0 (length 4), then a DQT marker.
        let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xDB, 0, 2];
        let out = jpeg_with_xmp(jpeg, b"<x/>");
        assert_eq!(&out[..8], &[0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2]);
        assert_eq!(&out[8..10], &[0xFF, 0xE1]);
        assert_eq!(&out[12..12 + JPEG_XMP.len()], JPEG_XMP);
        assert!(out.ends_with(&[b'<', b'x', b'/', b'>', 0xFF, 0xDB, 0, 2]));
    }
}
