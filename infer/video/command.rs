//! The two ffmpeg command lines around the network: decoding an input to raw RGB frames with
//! their timestamps, and encoding stylized frames with the input's other streams copied.
use super::ffmpeg::file_url;
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

/// `ffmpeg … -i INPUT` → NUT of RGB24 frames on stdout, every decoded frame once with its own
/// timestamp (`-copyts`, passthrough, the demuxer's time base), upright (ffmpeg applies the
/// rotation the container asks for), scaled down to `max_size` when given.
pub fn decode(input: &Path, max_size: Option<u32>, even: bool) -> Vec<OsString> {
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
        a.push(
            format!(
                "scale=w='min({n},iw)':h='min({n},ih)':force_original_aspect_ratio=decrease:\
                 force_divisible_by={divisible}:flags=lanczos"
            )
            .into(),
        );
    }
    a.extend(
        [
            "-fps_mode",
            "passthrough",
            "-enc_time_base:v",
            "demux",
            "-c:v",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-f",
            "nut",
            "pipe:1",
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
        _ => "demux".into(),
    };
    a.extend(["-fps_mode", "passthrough", "-enc_time_base:v", &time_base].map(OsString::from));
    let crf = e.crf.to_string();
    let h264 = |a: &mut Vec<OsString>| {
        a.extend(
            [
                "-c:v", "libx264", "-preset", "medium", "-crf", &crf, "-pix_fmt", "yuv420p",
            ]
            .map(OsString::from),
        );
        bt709(a);
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
            bt709(&mut a);
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

/// RGB → Y'CbCr with the BT.709 matrix, limited range, and the stream tagged so: every player
/// then converts back with the same matrix.
fn bt709(a: &mut Vec<OsString>) {
    a.extend(
        [
            "-vf",
            "scale=out_color_matrix=bt709:out_range=tv,\
             setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
        ]
        .map(OsString::from),
    );
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
        let plain = joined(&decode(Path::new("x.mp4"), None, true));
        assert!(!plain.contains("scale"), "{plain}");
        assert!(plain.contains("-enc_time_base:v demux"));
        let small = joined(&decode(Path::new("x.mp4"), Some(320), true));
        assert!(small.contains("min(320,iw)") && small.contains("force_divisible_by=2"));
    }
}
