//! HEIF (an iPhone's HEIC) and AVIF through libheif, loaded when the first such file is read
//! rather than linked: the build never needs libheif or its headers, a binary runs on
//! machines without it, and there such a file is that file's one-line error saying how to
//! get it. Only libheif's stable C API is used (1.12 or later).
//!
//! libheif applies the file's rotation and mirroring (`irot`, `imir`) while decoding, as
//! HEIF requires; the EXIF orientation, informational in HEIF, is then reset like any other.
use super::colour::{self, Embedded, Profile};
use super::encode::OutputFormat;
use super::metadata::Metadata;
use super::photo::{Alpha, Colour, Gray16Image, Photo, Rgb16Image};
use anyhow::{anyhow, bail, Context, Result};
use image::{GrayImage, RgbImage};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

/// Where to get libheif, for the error when it is missing.
pub const HOW_TO_GET: &str = "HEIC/HEIF and AVIF images need libheif, which was not found \
     (Debian/Ubuntu: apt-get install libheif1; macOS: brew install libheif; or set \
     FASTSTYLE_LIBHEIF to the library's path)";

/// Brands of the `ftyp` box that mark a HEIF or AVIF still image.
const BRANDS: [&[u8; 4]; 10] = [
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis",
];

/// Whether the bytes are a HEIF or AVIF file (by its `ftyp` box, not its name).
pub fn is_heif(bytes: &[u8]) -> bool {
    if bytes.get(4..8) != Some(b"ftyp") {
        return false;
    }
    let size = bytes
        .get(0..4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize);
    let end = size.clamp(16, 256).min(bytes.len());
    // The major brand at 8, then the compatible brands after the minor version.
    let major = bytes.get(8..12);
    let compatible = bytes.get(16..end).unwrap_or(&[]);
    BRANDS.iter().any(|b| major == Some(&b[..]))
        || compatible
            .chunks_exact(4)
            .any(|c| BRANDS.iter().any(|b| c == &b[..]))
}

#[repr(C)]
#[derive(Clone, Copy)]
struct HeifError {
    code: c_int,
    subcode: c_int,
    message: *const c_char,
}

/// `struct heif_color_profile_nclx`, version 1.
#[repr(C)]
struct Nclx {
    version: u8,
    primaries: c_int,
    transfer: c_int,
    matrix: c_int,
    full_range: u8,
    chromaticities: [f32; 8],
}

type Ptr = *mut c_void;
type CPtr = *const c_void;

const COLORSPACE_RGB: c_int = 1;
const CHROMA_RGB: c_int = 10;
const CHROMA_RGBA: c_int = 11;
const CHROMA_RRGGBB_LE: c_int = 14;
const CHROMA_RRGGBBAA_LE: c_int = 15;
const CHANNEL_INTERLEAVED: c_int = 10;
const fn fourcc(s: &[u8; 4]) -> c_int {
    ((s[0] as c_int) << 24) | ((s[1] as c_int) << 16) | ((s[2] as c_int) << 8) | s[3] as c_int
}
const PROFILE_NCLX: c_int = fourcc(b"nclx");
const PROFILE_RICC: c_int = fourcc(b"rICC");
const PROFILE_PROF: c_int = fourcc(b"prof");

/// The functions used, resolved once.
struct Api {
    _lib: Library,
    context_alloc: unsafe extern "C" fn() -> Ptr,
    context_free: unsafe extern "C" fn(Ptr),
    read_from_memory: unsafe extern "C" fn(Ptr, CPtr, usize, CPtr) -> HeifError,
    primary_handle: unsafe extern "C" fn(Ptr, *mut Ptr) -> HeifError,
    handle_release: unsafe extern "C" fn(CPtr),
    handle_width: unsafe extern "C" fn(CPtr) -> c_int,
    handle_height: unsafe extern "C" fn(CPtr) -> c_int,
    has_alpha: unsafe extern "C" fn(CPtr) -> c_int,
    luma_bits: unsafe extern "C" fn(CPtr) -> c_int,
    profile_type: unsafe extern "C" fn(CPtr) -> c_int,
    raw_profile_size: unsafe extern "C" fn(CPtr) -> usize,
    raw_profile: unsafe extern "C" fn(CPtr, Ptr) -> HeifError,
    nclx_profile: unsafe extern "C" fn(CPtr, *mut *mut Nclx) -> HeifError,
    nclx_free: unsafe extern "C" fn(*mut Nclx),
    metadata_count: unsafe extern "C" fn(CPtr, *const c_char) -> c_int,
    metadata_ids: unsafe extern "C" fn(CPtr, *const c_char, *mut u32, c_int) -> c_int,
    metadata_type: unsafe extern "C" fn(CPtr, u32) -> *const c_char,
    metadata_content_type: unsafe extern "C" fn(CPtr, u32) -> *const c_char,
    metadata_size: unsafe extern "C" fn(CPtr, u32) -> usize,
    metadata: unsafe extern "C" fn(CPtr, u32, Ptr) -> HeifError,
    decode_image: unsafe extern "C" fn(CPtr, *mut Ptr, c_int, c_int, CPtr) -> HeifError,
    image_width: unsafe extern "C" fn(CPtr, c_int) -> c_int,
    image_height: unsafe extern "C" fn(CPtr, c_int) -> c_int,
    bits_range: unsafe extern "C" fn(CPtr, c_int) -> c_int,
    plane: unsafe extern "C" fn(CPtr, c_int, *mut c_int) -> *const u8,
    image_release: unsafe extern "C" fn(CPtr),
}

/// Library names tried, in order, unless `FASTSTYLE_LIBHEIF` names one.
const NAMES: [&str; 5] = [
    "libheif.so.1",
    "libheif.so",
    "libheif.1.dylib",
    "libheif.dylib",
    "heif.dll",
];

fn api() -> Result<&'static Api> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| anyhow!("{e}"))
}

fn load() -> Result<Api, String> {
    // A library named by FASTSTYLE_LIBHEIF is the only one tried: the user chose it.
    let named = std::env::var_os("FASTSTYLE_LIBHEIF");
    let mut tried = Vec::new();
    let candidates: Vec<std::ffi::OsString> = match &named {
        Some(n) => vec![n.clone()],
        None => NAMES.iter().map(Into::into).collect(),
    };
    for name in candidates {
        // SAFETY: loading libheif runs its initialisers, which only set up its own state.
        match unsafe { Library::new(&name) } {
            Ok(lib) => return resolve(lib).map_err(|e| format!("{}: {e}", name.to_string_lossy())),
            Err(e) => tried.push(e.to_string()),
        }
    }
    if named.is_some() {
        return Err(format!("{HOW_TO_GET}: {}", tried[0]));
    }
    Err(HOW_TO_GET.to_string())
}

fn resolve(lib: Library) -> Result<Api, String> {
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the type is the function's signature in libheif's heif.h.
            *unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(|_| {
                format!(
                    "this libheif lacks {} (libheif 1.12 or later is needed)",
                    $name
                )
            })?
        };
    }
    // heif_init (1.13) loads decoder plugins; older versions need no call.
    // SAFETY: heif_init's signature; a null pointer means default parameters.
    if let Ok(init) = unsafe { lib.get::<unsafe extern "C" fn(CPtr) -> HeifError>(b"heif_init\0") }
    {
        // SAFETY: as above; called once per process (the result is cached).
        let e = unsafe { init(std::ptr::null()) };
        if e.code != 0 {
            return Err(format!("libheif did not start: {}", message(e)));
        }
    }
    Ok(Api {
        context_alloc: sym!("heif_context_alloc"),
        context_free: sym!("heif_context_free"),
        read_from_memory: sym!("heif_context_read_from_memory_without_copy"),
        primary_handle: sym!("heif_context_get_primary_image_handle"),
        handle_release: sym!("heif_image_handle_release"),
        handle_width: sym!("heif_image_handle_get_width"),
        handle_height: sym!("heif_image_handle_get_height"),
        has_alpha: sym!("heif_image_handle_has_alpha_channel"),
        luma_bits: sym!("heif_image_handle_get_luma_bits_per_pixel"),
        profile_type: sym!("heif_image_handle_get_color_profile_type"),
        raw_profile_size: sym!("heif_image_handle_get_raw_color_profile_size"),
        raw_profile: sym!("heif_image_handle_get_raw_color_profile"),
        nclx_profile: sym!("heif_image_handle_get_nclx_color_profile"),
        nclx_free: sym!("heif_nclx_color_profile_free"),
        metadata_count: sym!("heif_image_handle_get_number_of_metadata_blocks"),
        metadata_ids: sym!("heif_image_handle_get_list_of_metadata_block_IDs"),
        metadata_type: sym!("heif_image_handle_get_metadata_type"),
        metadata_content_type: sym!("heif_image_handle_get_metadata_content_type"),
        metadata_size: sym!("heif_image_handle_get_metadata_size"),
        metadata: sym!("heif_image_handle_get_metadata"),
        decode_image: sym!("heif_decode_image"),
        image_width: sym!("heif_image_get_width"),
        image_height: sym!("heif_image_get_height"),
        bits_range: sym!("heif_image_get_bits_per_pixel_range"),
        plane: sym!("heif_image_get_plane_readonly"),
        image_release: sym!("heif_image_release"),
        _lib: lib,
    })
}

fn message(e: HeifError) -> String {
    if e.message.is_null() {
        return format!("libheif error {}.{}", e.code, e.subcode);
    }
    // SAFETY: libheif's messages are static NUL-terminated strings.
    unsafe { CStr::from_ptr(e.message) }
        .to_string_lossy()
        .into_owned()
}

fn check(e: HeifError) -> Result<()> {
    if e.code == 0 {
        Ok(())
    } else {
        bail!("{}", message(e))
    }
}

/// A file's primary image, with the context that owns it; both released on drop.
struct Primary<'a> {
    api: &'static Api,
    ctx: Ptr,
    handle: Ptr,
    _bytes: &'a [u8],
}

impl Drop for Primary<'_> {
    fn drop(&mut self) {
        // SAFETY: both were allocated by libheif and are released once.
        unsafe {
            if !self.handle.is_null() {
                (self.api.handle_release)(self.handle);
            }
            (self.api.context_free)(self.ctx);
        }
    }
}

impl<'a> Primary<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self> {
        let api = api()?;
        // SAFETY: a fresh context; `bytes` outlives it (it is borrowed by `Primary`).
        let ctx = unsafe { (api.context_alloc)() };
        if ctx.is_null() {
            bail!("libheif could not allocate a context");
        }
        let mut primary = Primary {
            api,
            ctx,
            handle: std::ptr::null_mut(),
            _bytes: bytes,
        };
        // SAFETY: as above; a null options pointer means defaults.
        check(unsafe {
            (api.read_from_memory)(ctx, bytes.as_ptr().cast(), bytes.len(), std::ptr::null())
        })?;
        // SAFETY: the context holds a file; the handle is written on success.
        check(unsafe { (api.primary_handle)(ctx, &mut primary.handle) })?;
        Ok(primary)
    }

    fn dimensions(&self) -> (u32, u32) {
        // SAFETY: a valid handle.
        let (w, h) = unsafe {
            (
                (self.api.handle_width)(self.handle),
                (self.api.handle_height)(self.handle),
            )
        };
        (w.max(0) as u32, h.max(0) as u32)
    }

    fn profile(&self) -> Option<Profile> {
        let api = self.api;
        // SAFETY: a valid handle; buffers are sized as libheif reports.
        unsafe {
            match (api.profile_type)(self.handle) {
                PROFILE_PROF | PROFILE_RICC => {
                    let mut icc = vec![0u8; (api.raw_profile_size)(self.handle)];
                    check((api.raw_profile)(self.handle, icc.as_mut_ptr().cast())).ok()?;
                    match colour::embedded(icc) {
                        Embedded::Rgb(p) => Some(p),
                        _ => None,
                    }
                }
                PROFILE_NCLX => {
                    let mut nclx: *mut Nclx = std::ptr::null_mut();
                    check((api.nclx_profile)(self.handle, &mut nclx)).ok()?;
                    if nclx.is_null() {
                        return None;
                    }
                    let (primaries, transfer) = ((*nclx).primaries, (*nclx).transfer);
                    (api.nclx_free)(nclx);
                    nclx_profile(primaries, transfer)
                }
                _ => None,
            }
        }
    }

    fn metadata(&self) -> Metadata {
        let api = self.api;
        let mut exif = None;
        let mut xmp = None;
        // SAFETY: a valid handle; buffers are sized as libheif reports; the returned strings
        // are read before the next call.
        unsafe {
            let n = (api.metadata_count)(self.handle, std::ptr::null());
            let mut ids = vec![0u32; n.max(0) as usize];
            let n = (api.metadata_ids)(self.handle, std::ptr::null(), ids.as_mut_ptr(), n);
            for &id in ids.iter().take(n.max(0) as usize) {
                let kind = cstr((api.metadata_type)(self.handle, id));
                let content = cstr((api.metadata_content_type)(self.handle, id));
                let mut data = vec![0u8; (api.metadata_size)(self.handle, id)];
                if check((api.metadata)(self.handle, id, data.as_mut_ptr().cast())).is_err() {
                    continue;
                }
                if kind == "Exif" && exif.is_none() {
                    // Four bytes give the offset of the TIFF header after them.
                    let offset = data
                        .get(0..4)
                        .map(|o| u32::from_be_bytes([o[0], o[1], o[2], o[3]]) as usize);
                    exif = offset.and_then(|o| data.get(4 + o..)).map(<[u8]>::to_vec);
                } else if kind == "mime" && content == "application/rdf+xml" && xmp.is_none() {
                    xmp = Some(data);
                }
            }
        }
        Metadata::upright(exif, xmp)
    }

    fn decode(&self) -> Result<(Colour, Option<Alpha>)> {
        let api = self.api;
        // SAFETY: a valid handle.
        let (alpha, bits) = unsafe {
            (
                (api.has_alpha)(self.handle) != 0,
                (api.luma_bits)(self.handle),
            )
        };
        let deep = bits > 8;
        let chroma = match (deep, alpha) {
            (false, false) => CHROMA_RGB,
            (false, true) => CHROMA_RGBA,
            (true, false) => CHROMA_RRGGBB_LE,
            (true, true) => CHROMA_RRGGBBAA_LE,
        };
        let mut image: Ptr = std::ptr::null_mut();
        // SAFETY: a valid handle; null options: defaults, transformations applied.
        check(unsafe {
            (api.decode_image)(
                self.handle,
                &mut image,
                COLORSPACE_RGB,
                chroma,
                std::ptr::null(),
            )
        })?;
        let image = Decoded { api, image };
        image.pixels(deep, alpha)
    }
}

fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libheif returns NUL-terminated strings, valid until its next call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The colour space of a HEIF file's colour code points (ITU-T H.273), where it is not sRGB.
/// HDR transfers (PQ, HLG) are not tone-mapped: such files are taken as sRGB.
fn nclx_profile(primaries: c_int, transfer: c_int) -> Option<Profile> {
    let sdr = matches!(transfer, 1 | 2 | 6 | 13 | 14 | 15);
    let profile = match primaries {
        12 if sdr => moxcms::ColorProfile::new_display_p3(),
        9 if sdr => moxcms::ColorProfile::new_bt2020(),
        _ => return None,
    };
    Profile::from_engine(profile).ok()
}

/// A decoded image, released on drop.
struct Decoded {
    api: &'static Api,
    image: Ptr,
}

impl Drop for Decoded {
    fn drop(&mut self) {
        // SAFETY: allocated by heif_decode_image, released once.
        unsafe { (self.api.image_release)(self.image) }
    }
}

impl Decoded {
    fn pixels(&self, deep: bool, alpha: bool) -> Result<(Colour, Option<Alpha>)> {
        let api = self.api;
        let mut stride: c_int = 0;
        // SAFETY: a decoded interleaved image; the plane holds `height` rows of `stride` bytes.
        let (w, h, plane, range) = unsafe {
            (
                (api.image_width)(self.image, CHANNEL_INTERLEAVED),
                (api.image_height)(self.image, CHANNEL_INTERLEAVED),
                (api.plane)(self.image, CHANNEL_INTERLEAVED, &mut stride),
                (api.bits_range)(self.image, CHANNEL_INTERLEAVED),
            )
        };
        if plane.is_null() || w <= 0 || h <= 0 || stride <= 0 {
            bail!("libheif decoded no pixels");
        }
        let (w, h, stride) = (w as usize, h as usize, stride as usize);
        let channels = if alpha { 4 } else { 3 };
        let row_bytes = w * channels * if deep { 2 } else { 1 };
        if stride < row_bytes {
            bail!("libheif returned rows shorter than the image");
        }
        // SAFETY: as above.
        let data = unsafe { std::slice::from_raw_parts(plane, stride * h) };
        let rows = || data.chunks(stride).map(|r| &r[..row_bytes]);
        let (wu, hu) = (w as u32, h as u32);
        if deep {
            // Values of `range` bits (10, 12), scaled to the full 16.
            let max = (1u32 << range.clamp(1, 16)) - 1;
            let scale = |v: u16| ((u32::from(v).min(max) * 65535 + max / 2) / max) as u16;
            let mut rgb = Vec::with_capacity(w * h * 3);
            let mut a = Vec::with_capacity(if alpha { w * h } else { 0 });
            for row in rows() {
                for px in row.chunks_exact(channels * 2) {
                    for c in 0..3 {
                        rgb.push(scale(u16::from_le_bytes([px[2 * c], px[2 * c + 1]])));
                    }
                    if alpha {
                        a.push(scale(u16::from_le_bytes([px[6], px[7]])));
                    }
                }
            }
            let colour = Rgb16Image::from_raw(wu, hu, rgb).context("HEIF image size")?;
            let alpha = alpha
                .then(|| Gray16Image::from_raw(wu, hu, a).map(Alpha::Sixteen))
                .flatten();
            Ok((Colour::Sixteen(colour), alpha))
        } else {
            let mut rgb = Vec::with_capacity(w * h * 3);
            let mut a = Vec::with_capacity(if alpha { w * h } else { 0 });
            for row in rows() {
                if alpha {
                    for px in row.chunks_exact(4) {
                        rgb.extend_from_slice(&px[..3]);
                        a.push(px[3]);
                    }
                } else {
                    rgb.extend_from_slice(row);
                }
            }
            let colour = RgbImage::from_raw(wu, hu, rgb).context("HEIF image size")?;
            let alpha = alpha
                .then(|| GrayImage::from_raw(wu, hu, a).map(Alpha::Eight))
                .flatten();
            Ok((Colour::Eight(colour), alpha))
        }
    }
}

/// The size of a HEIF or AVIF file's primary image, from its header.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    Ok(Primary::open(bytes)?.dimensions())
}

/// Decodes a HEIF or AVIF file's primary image, refusing it from its header when it has more
/// than `max_pixels`.
pub fn decode(bytes: &[u8], max_pixels: Option<u64>) -> Result<Photo> {
    let primary = Primary::open(bytes)?;
    let (w, h) = primary.dimensions();
    super::decode::check_size(w, h, max_pixels)?;
    let (colour, alpha) = primary.decode()?;
    Ok(Photo {
        colour,
        alpha,
        profile: primary.profile(),
        metadata: primary.metadata(),
        default_format: Some(OutputFormat::Jpeg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heif_and_avif_are_told_by_their_brands() {
        let ftyp = |major: &[u8; 4], compatible: &[u8]| {
            let mut v = Vec::new();
            v.extend_from_slice(&((16 + compatible.len()) as u32).to_be_bytes());
            v.extend_from_slice(b"ftyp");
            v.extend_from_slice(major);
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(compatible);
            v.extend_from_slice(&[0; 32]);
            v
        };
        assert!(is_heif(&ftyp(b"heic", b"mif1heic")));
        assert!(is_heif(&ftyp(b"avif", b"")));
        assert!(is_heif(&ftyp(b"mif1", b"")));
        assert!(is_heif(&ftyp(b"isom", b"avif")));
        assert!(!is_heif(&ftyp(b"isom", b"iso2mp41")), "an MP4 video");
        assert!(!is_heif(b"\x89PNG\r\n\x1a\n...."));
    }
}
