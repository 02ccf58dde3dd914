//! The two ffmpeg command lines around the network: decoding an input to raw RGB frames with
//! their timestamps, and encoding stylized frames with the input's other streams copied.
use super::ffmpeg::{file_url, Colour, Version};
use std::ffi::OsString;
use std::path::Path;

/// Output containers by extension, and what goes in them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// MP4 (also `.m4v`): H.264.
    Mp4,
    /// QuickTime: H.264.
    Mov,
    /// Matroska: H.264, attachments (fonts) copied too.
    Mkv,
    /// WebM: VP9.
    Webm,
    /// AVI: H.264.
    Avi,
    /// Animated GIF: a palette per frame.
    Gif,
    /// Animated WebP.
    WebP,
}

impl Container {
    /// The container that a file name's extension names, if it is one of these.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "mp4" | "m4v" => Self::Mp4,
            "mov" => Self::Mov,
            "mkv" => Self::Mkv,
            "webm" => Self::Webm,
            "avi" => Self::Avi,
            "gif" => Self::Gif,
            "webp" => Self::WebP,
            _ => return None,
        })
    }

    fn muxer(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Mov => "mov",
            Self::Mkv => "matroska",
            Self::Webm => "webm",
            Self::Avi => "avi",
            Self::Gif => "gif",
            Self::WebP => "webp",
        }
    }

    /// Whether the container holds sound and subtitles.
    fn holds_other_streams(self) -> bool {
        !matches!(self, Self::Gif | Self::WebP)
    }

    /// Whether the codec needs even sides (4:2:0 chroma).
    pub fn needs_even_size(self) -> bool {
        !matches!(self, Self::Gif | Self::WebP)
    }
}

/// Every frame once, in the demuxer's time base: the options `version` takes for that.
fn exact_timing(a: &mut Vec<OsString>, version: Version, time_base: &str) {
    let sync = if version.has_fps_mode() {
        "-fps_mode"
    } else {
        "-vsync"
    };
    a.extend([sync, "passthrough", "-enc_time_base:v", time_base].map(OsString::from));
}

/// `ffmpeg … -i INPUT` → NUT of RGB24 frames on stdout, every decoded frame once with its own
/// timestamp (`-copyts`, passthrough, the demuxer's time base), upright (ffmpeg applies the
/// rotation the container asks for), scaled down to `max_size` when given; in options that
/// ffmpeg `version` takes.
pub fn decode(input: &Path, max_size: Option<u32>, even: bool, version: Version) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "level+info",
        "-copyts",
        "-i",
    ]
    .map(OsString::from)
    .to_vec();
    a.push(file_url(input));
    a.extend(["-map", "0:V:0"].map(OsString::from));
    if let Some(n) = max_size {
        // Down only, aspect kept (pixel aspect too), even sides when the encoder needs them.
        let divisible = if even { 2 } else { 1 };
        a.push("-vf".into());
        a.push(if version.has_divisible_scale() {
            format!(
                "scale=w='min({n},iw)':h='min({n},ih)':force_original_aspect_ratio=decrease:\
                 force_divisible_by={divisible}:flags=lanczos"
            )
            .into()
        } else {
            // The same box without force_divisible_by (before 4.3).
            let f = format!("min(1,{n}/max(iw,ih))");
            format!(
                "scale=w='max({divisible},trunc(iw*{f}/{divisible})*{divisible})':\
                 h='max({divisible},trunc(ih*{f}/{divisible})*{divisible})':flags=lanczos"
            )
            .into()
        });
    }
    exact_timing(&mut a, version, version.demux_time_base());
    a.extend(
        [
            "-c:v", "rawvideo", "-pix_fmt", "rgb24", "-f", "nut", "pipe:1",
        ]
        .map(OsString::from),
    );
    a
}

/// What the encoder needs besides the frames.
pub struct Encode<'a> {
    /// The original file, whose sound, subtitles and metadata are copied.
    pub input: &'a Path,
    /// The file ffmpeg writes (a temporary name; the container is given explicitly).
    pub output: &'a Path,
    /// The container to write.
    pub container: Container,
    /// Constant rate factor of H.264 / VP9.
    pub crf: u8,
    /// The input's nominal frame rate (`30000/1001`), when ffmpeg stated one.
    pub frame_rate: Option<&'a str>,
    /// The input's colour tags, kept on the output where the container holds them.
    pub colour: &'a Colour,
    /// The ffmpeg that runs it.
    pub version: Version,
}

/// NUT of RGB24 frames on stdin + the original file → the output file: stylized video
/// encoded, every audio and subtitle stream and the metadata copied as they are.
pub fn encode(e: &Encode) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "level+error",
        "-copyts",
        "-f",
        "nut",
        "-i",
        "pipe:0",
    ]
    .map(OsString::from)
    .to_vec();
    let others = e.container.holds_other_streams();
    if others {
        a.push("-i".into());
        a.push(file_url(e.input));
    }
    a.extend(["-map", "0:v:0"].map(OsString::from));
    if others {
        a.extend(
            [
                "-map",
                "1:a?",
                "-map",
                "1:s?",
                "-c:a",
                "copy",
                "-c:s",
                "copy",
                "-map_metadata",
                "1",
            ]
            .map(OsString::from),
        );
        if e.container == Container::Mkv {
            a.extend(["-map", "1:t?", "-c:t", "copy"].map(OsString::from));
        }
    }
    // Each frame keeps its timestamp in the input's own time base; AVI, which has no
    // timestamps but a frame clock, gets the nominal frame rate's.
    let time_base = match (e.container, e.frame_rate.and_then(|r| r.split_once('/'))) {
        (Container::Avi, Some((num, den))) => format!("{den}/{num}"),
        _ => e.version.demux_time_base().into(),
    };
    exact_timing(&mut a, e.version, &time_base);
    let crf = e.crf.to_string();
    let h264 = |a: &mut Vec<OsString>| {
        a.extend(
            [
                "-c:v", "libx264", "-preset", "medium", "-crf", &crf, "-pix_fmt", "yuv420p",
            ]
            .map(OsString::from),
        );
        tagged(a, e.colour, e.version);
    };
    match e.container {
        Container::Mp4 | Container::Mov => {
            h264(&mut a);
            a.extend(["-movflags", "+faststart"].map(OsString::from));
        }
        Container::Mkv | Container::Avi => h264(&mut a),
        Container::Webm => {
            a.extend(
                [
                    "-c:v",
                    "libvpx-vp9",
                    "-crf",
                    &crf,
                    "-b:v",
                    "0",
                    "-pix_fmt",
                    "yuv420p",
                    "-row-mt",
                    "1",
                    "-deadline",
                    "good",
                    "-cpu-used",
                    "4",
                ]
                .map(OsString::from),
            );
            tagged(&mut a, e.colour, e.version);
        }
        Container::Gif => a.extend(
            [
                "-filter:v",
                "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1",
                "-c:v",
                "gif",
                "-loop",
                "0",
            ]
            .map(OsString::from),
        ),
        Container::WebP => a.extend(
            [
                "-c:v",
                "libwebp_anim",
                "-quality",
                "90",
                "-pix_fmt",
                "yuv420p",
                "-loop",
                "0",
            ]
            .map(OsString::from),
        ),
    }
    a.extend(["-f", e.container.muxer(), "-y"].map(OsString::from));
    a.push(file_url(e.output));
    a
}

/// The swscale matrix for RGB → Y'CbCr that writes the `matrix` tag, and the tag written:
/// the input's where swscale has it, else BT.709 (untagged inputs too).
fn swscale_matrix(matrix: Option<&str>) -> (&'static str, &'static str) {
    match matrix {
        Some("smpte170m") => ("smpte170m", "smpte170m"),
        Some("bt470bg") => ("bt470", "bt470bg"),
        Some("smpte240m") => ("smpte240m", "smpte240m"),
        Some("fcc") => ("fcc", "fcc"),
        Some("bt2020nc") => ("bt2020", "bt2020nc"),
        _ => ("bt709", "bt709"),
    }
}

/// RGB → Y'CbCr with the input's matrix (BT.709 where it has none or swscale lacks it),
/// limited range, and the stream tagged with that matrix and the input's primaries and
/// transfer (BT.709 where it has none): the frames' RGB is in the input's colours, since the
/// decoder converted with its matrix and changed neither primaries nor transfer.
fn tagged(a: &mut Vec<OsString>, colour: &Colour, version: Version) {
    let (matrix, tag) = swscale_matrix(colour.matrix.as_deref());
    let primaries = colour.primaries.as_deref().unwrap_or("bt709");
    let transfer = colour.transfer.as_deref().unwrap_or("bt709");
    a.push("-vf".into());
    a.push(
        format!(
            "scale=out_color_matrix={matrix}:out_range=tv,\
             setparams=color_primaries={primaries}:color_trc={transfer}:colorspace={tag}:range=tv"
        )
        .into(),
    );
    if !version.has_fps_mode() {
        // Before 5.1 the encoder takes its tags from its options, not from the frames; the
        // options name two transfers otherwise.
        let transfer = match transfer {
            "bt470m" => "gamma22",
            "bt470bg" => "gamma28",
            other => other,
        };
        a.extend(
            [
                "-color_primaries",
                primaries,
                "-color_trc",
                transfer,
                "-colorspace",
                tag,
                "-color_range",
                "tv",
            ]
            .map(OsString::from),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(a: &[OsString]) -> String {
        a.iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn containers_by_extension() {
        assert_eq!(
            Container::from_path(Path::new("a/b.MP4")),
            Some(Container::Mp4)
        );
        assert_eq!(
            Container::from_path(Path::new("b.m4v")),
            Some(Container::Mp4)
        );
        assert_eq!(
            Container::from_path(Path::new("b.webm")),
            Some(Container::Webm)
        );
        assert_eq!(Container::from_path(Path::new("b.png")), None);
        assert_eq!(Container::from_path(Path::new("b")), None);
    }

    #[test]
    fn encoders_per_container() {
        let args = |container| {
            joined(&encode(&Encode {
                input: Path::new("-in.mov"),
                output: Path::new("out.tmp"),
                container,
                crf: 20,
                frame_rate: Some("30000/1001"),
                colour: &Colour::default(),
                version: Version::new(9, 0),
            }))
        };
        let mp4 = args(Container::Mp4);
        assert!(
            mp4.contains("-c:v libx264 -preset medium -crf 20 -pix_fmt yuv420p"),
            "{mp4}"
        );
        assert!(mp4.contains("-i file:-in.mov"), "{mp4}");
        assert!(mp4.contains("-c:a copy -c:s copy"), "{mp4}");
        assert!(mp4.ends_with("-f mp4 -y file:out.tmp"), "{mp4}");
        assert!(args(Container::Webm).contains("-c:v libvpx-vp9 -crf 20"));
        assert!(args(Container::Mkv).contains("-map 1:t?"));
        assert!(mp4.contains("-enc_time_base:v demux"), "{mp4}");
        assert!(args(Container::Avi).contains("-enc_time_base:v 1001/30000"));
        let gif = args(Container::Gif);
        assert!(!gif.contains("1:a?") && !gif.contains("-in.mov"), "{gif}");
    }

    #[test]
    fn decoding_scales_down_only_when_asked() {
        let new = Version::new(7, 1);
        let plain = joined(&decode(Path::new("x.mp4"), None, true, new));
        assert!(!plain.contains("scale"), "{plain}");
        assert!(plain.contains("-fps_mode passthrough -enc_time_base:v demux"));
        let small = joined(&decode(Path::new("x.mp4"), Some(320), true, new));
        assert!(small.contains("min(320,iw)") && small.contains("force_divisible_by=2"));
    }

    #[test]
    fn each_version_gets_options_it_takes() {
        let decoding = |v| joined(&decode(Path::new("x.mp4"), Some(320), true, v));
        let debian = decoding(Version::new(5, 1));
        assert!(
            debian.contains("-fps_mode passthrough -enc_time_base:v -1"),
            "{debian}"
        );
        let ubuntu = decoding(Version::new(4, 4));
        assert!(
            ubuntu.contains("-vsync passthrough -enc_time_base:v -1"),
            "{ubuntu}"
        );
        assert!(ubuntu.contains("force_divisible_by=2"), "{ubuntu}");
        let old = decoding(Version::new(4, 2));
        assert!(!old.contains("force_divisible_by") && old.contains("min(1,320/max(iw,ih))"));
        let encoding = |version, container| {
            joined(&encode(&Encode {
                input: Path::new("in.mp4"),
                output: Path::new("out.tmp"),
                container,
                crf: 20,
                frame_rate: Some("25/1"),
                colour: &Colour::default(),
                version,
            }))
        };
        assert!(encoding(Version::new(5, 1), Container::Mp4)
            .contains("-fps_mode passthrough -enc_time_base:v -1"));
        assert!(encoding(Version::new(4, 4), Container::Mkv)
            .contains("-vsync passthrough -enc_time_base:v -1"));
        assert!(encoding(Version::new(4, 4), Container::Avi).contains("-enc_time_base:v 1/25"));
    }

    #[test]
    fn the_inputs_colour_tags_are_kept() {
        let encoding = |colour: &Colour, container| {
            joined(&encode(&Encode {
                input: Path::new("in.mp4"),
                output: Path::new("out.tmp"),
                container,
                crf: 20,
                frame_rate: None,
                colour,
                version: Version::new(9, 0),
            }))
        };
        let s = |v: &str| Some(v.to_string());
        let pal = Colour {
            matrix: s("bt470bg"),
            primaries: s("bt470bg"),
            transfer: s("smpte170m"),
        };
        let mp4 = encoding(&pal, Container::Mp4);
        assert!(mp4.contains("out_color_matrix=bt470:"), "{mp4}");
        assert!(mp4.contains("color_primaries=bt470bg:color_trc=smpte170m:colorspace=bt470bg"));
        let hdr = Colour {
            matrix: s("bt2020nc"),
            primaries: s("bt2020"),
            transfer: s("smpte2084"),
        };
        let webm = encoding(&hdr, Container::Webm);
        assert!(webm.contains("out_color_matrix=bt2020:") && webm.contains("color_trc=smpte2084"));
        // A matrix swscale cannot write is written and tagged BT.709; the rest is kept.
        let ycgco = Colour {
            matrix: s("ycgco"),
            ..hdr.clone()
        };
        let mkv = encoding(&ycgco, Container::Mkv);
        assert!(mkv.contains("out_color_matrix=bt709:") && mkv.contains("colorspace=bt709:"));
        assert!(mkv.contains("color_primaries=bt2020"));
        // Untagged: BT.709 throughout, as before; GIF carries no tags.
        let plain = encoding(&Colour::default(), Container::Mp4);
        assert!(plain.contains("color_primaries=bt709:color_trc=bt709:colorspace=bt709"));
        assert!(!encoding(&pal, Container::Gif).contains("setparams"));
    }
}
