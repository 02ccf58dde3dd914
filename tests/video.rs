//! `infer` on videos, end to end: clips made here with ffmpeg (tiny, a second or two, with
//! sound), random style models, and ffmpeg itself to read the results back.
//! Every test is skipped, saying so, where no ffmpeg can be found.
mod common;

use common::{error_lines, random_model, random_net, stderr};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tch::nn::Module;
use tempfile::TempDir;

macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(OsString::from(&$a)),*] };
}

/// The ffmpeg that `infer` would find: `$FASTSTYLE_FFMPEG`, PATH, the project's `.venv`.
fn ffmpeg() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FASTSTYLE_FFMPEG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ffmpeg"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let link = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/ffmpeg");
        link.is_file().then_some(link)
    })
}

macro_rules! need_ffmpeg {
    () => {
        match ffmpeg() {
            Some(f) => f,
            None => {
                eprintln!(
                    "SKIPPED: no ffmpeg (set FASTSTYLE_FFMPEG or run scripts/setup.sh, which links .venv/bin/ffmpeg)"
                );
                return;
            }
        }
    };
}

/// Runs ffmpeg; panics with its message when it fails.
fn run_ffmpeg(ffmpeg: &Path, args: &[&str]) -> Output {
    let out = Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg {args:?}: {}", stderr(&out));
    out
}

/// A clip of the test source (moving patterns) at `size`, `rate`, `secs`, with a sine tone.
fn make_clip(ffmpeg: &Path, path: &Path, size: &str, rate: u32, secs: f32, extra: &[&str]) {
    let video = format!("testsrc2=size={size}:rate={rate}:duration={secs}");
    let audio = format!("sine=frequency=440:duration={secs}");
    let mut a = vec!["-f", "lavfi", "-i", &video, "-f", "lavfi", "-i", &audio];
    if !extra.contains(&"-c:a") {
        a.extend_from_slice(&["-c:a", "aac"]);
    }
    a.extend_from_slice(extra);
    let p = path.to_str().unwrap();
    a.extend_from_slice(&["-pix_fmt", "yuv420p", "-shortest", p]);
    run_ffmpeg(ffmpeg, &a);
}

/// Presentation times (seconds) of a file's decoded video frames, as ffmpeg reports them.
fn frame_times(ffmpeg: &Path, path: &Path) -> Vec<f64> {
    let out = run_ffmpeg(
        ffmpeg,
        &[
            "-copyts",
            "-i",
            path.to_str().unwrap(),
            "-map",
            "0:V:0",
            "-fps_mode",
            "passthrough",
            "-enc_time_base:v",
            "demux",
            "-f",
            "framecrc",
            "-",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut tb = 0.0;
    let mut times = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#tb 0: ") {
            let (n, d) = rest.trim().split_once('/').unwrap();
            tb = n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap();
        } else if line.starts_with("0,") {
            let pts: f64 = line.split(',').nth(2).unwrap().trim().parse().unwrap();
            times.push(pts * tb);
        }
    }
    times
}

/// ffmpeg's framecrc lines (stream, dts, pts, duration, size, checksum…) of a file's audio
/// streams, with `codec` (e.g. `-c copy`) before the output.
fn audio_framecrc(ffmpeg: &Path, path: &Path, codec: &[&str]) -> Vec<String> {
    let mut args = vec!["-i", path.to_str().unwrap(), "-map", "0:a"];
    args.extend(codec);
    args.extend(["-f", "framecrc", "-"]);
    let out = run_ffmpeg(ffmpeg, &args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Packet checksums of a file's audio streams, copied, not decoded: equal lists mean the
/// sound was copied bit for bit.
fn audio_packets(ffmpeg: &Path, path: &Path) -> Vec<String> {
    audio_framecrc(ffmpeg, path, &["-c", "copy"])
        .iter()
        .map(|l| l.split(',').skip(4).collect::<Vec<_>>().join(","))
        .collect()
}

/// The number of sound samples that a file decodes to, after its priming and end trims
/// (framecrc's duration of decoded sound is in samples).
fn decoded_samples(ffmpeg: &Path, path: &Path) -> i64 {
    audio_framecrc(ffmpeg, path, &[])
        .iter()
        .filter_map(|l| l.split(',').nth(3)?.trim().parse::<i64>().ok())
        .sum()
}

/// Sound packets as `audio_packets` gives them, the last one without its side data: an
/// end trim that the muxer may mark there (see the test below).
fn without_last_side_data(mut packets: Vec<String>) -> Vec<String> {
    if let Some(last) = packets.last_mut() {
        if let Some(i) = last.find(", S=") {
            last.truncate(i);
        }
    }
    packets
}

/// ffmpeg's description of a file (its `-i` banner).
fn banner(ffmpeg: &Path, path: &Path) -> String {
    let out = Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(path)
        .output()
        .unwrap();
    stderr(&out)
}

/// The displayed video size that the banner states (`Video: … 48x64 …`).
fn video_size(banner: &str) -> (u32, u32) {
    let line = banner.lines().find(|l| l.contains("Video:")).unwrap();
    line.split([' ', ','])
        .find_map(|w| {
            let (a, b) = w.split_once('x')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap()
}

/// Every decoded frame of a file as RGB bytes (upright, as players show it).
fn decode_frames(ffmpeg: &Path, path: &Path, (w, h): (u32, u32)) -> Vec<Vec<u8>> {
    let out = run_ffmpeg(
        ffmpeg,
        &[
            "-i",
            path.to_str().unwrap(),
            "-map",
            "0:V:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
    );
    let n = (w * h * 3) as usize;
    assert_eq!(
        out.stdout.len() % n,
        0,
        "decoded bytes are not whole {w}×{h} frames"
    );
    out.stdout.chunks(n).map(<[u8]>::to_vec).collect()
}

/// BT.709 luma of RGB bytes: what 4:2:0 video keeps at full resolution.
fn luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3)
        .map(|p| {
            let [r, g, b] = [p[0], p[1], p[2]].map(f64::from);
            (0.2126 * r + 0.7152 * g + 0.0722 * b).round() as u8
        })
        .collect()
}

/// A frame turned half a turn (its pixels in reverse order).
fn turned(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3).rev().flatten().copied().collect()
}

/// The random network of `seed` on one RGB frame, as bytes.
fn network_output(seed: u64, rgb: &[u8], (w, h): (u32, u32)) -> Vec<u8> {
    let (_vs, net) = random_net(seed);
    let img = image::RgbImage::from_raw(w, h, rgb.to_vec()).unwrap();
    let y = tch::no_grad(|| net.forward(&faststyle::imageio::to_tensor(&img)));
    faststyle::imageio::from_tensor(&y).unwrap().into_raw()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

fn assert_same_times(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "frame counts differ: {a:?} vs {b:?}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() < 1e-4, "frame {i}: {x} s vs {y} s");
    }
}

/// Files under `dir` whose name marks a temporary write.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

struct Setup {
    dir: TempDir,
    model: PathBuf,
}

impl Setup {
    fn new(seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.safetensors");
        random_model(&model, seed);
        Self { dir, model }
    }

    fn path(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    fn infer(&self, ffmpeg: &Path, extra: Vec<OsString>) -> Output {
        let mut a = args!["-c", self.model, "--device", "cpu"];
        a.extend(extra);
        Command::new(common::bin("infer"))
            .args(a)
            .env("FASTSTYLE_FFMPEG", ffmpeg)
            .output()
            .unwrap()
    }
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "infer failed: {}", stderr(out));
}

#[test]
fn a_clip_keeps_its_frames_timing_size_and_sound_and_holds_the_network_output() {
    let ffmpeg = need_ffmpeg!();
    let s = Setup::new(3);
    let input = s.path("clip.mp4");
    make_clip(
        &ffmpeg,
        &input,
        "64x48",
        30,
        1.5,
        &["-c:v", "libx264", "-crf", "10"],
    );
    let out = s.infer(&ffmpeg, args![input]);
    assert_ok(&out);
    let output = s.path("clip-stylized.mp4");

    assert_same_times(
        &frame_times(&ffmpeg, &input),
        &frame_times(&ffmpeg, &output),
    );
    assert_eq!(frame_times(&ffmpeg, &output).len(), 45);
    let info = banner(&ffmpeg, &output);
    assert_eq!(video_size(&info), (64, 48), "{info}");
    assert!(
        info.contains("Video: h264") && info.contains("yuv420p"),
        "{info}"
    );
    assert!(info.contains("30 fps"), "{info}");
    let sound = audio_packets(&ffmpeg, &input);
    assert!(!sound.is_empty());
    assert_eq!(
        sound,
        audio_packets(&ffmpeg, &output),
        "audio was not copied as it was"
    );

    // A decoded output frame is the network's output on the decoded input frame, up to the
    // codec's loss (compared in luma, which 4:2:0 keeps whole): far closer to it than to the
    // unstylized frame or to the network's output for the frame turned round.
    let inputs = decode_frames(&ffmpeg, &input, (64, 48));
    let outputs = decode_frames(&ffmpeg, &output, (64, 48));
    for i in [0, 20, 44] {
        let out = luma(&outputs[i]);
        let net = network_output(3, &inputs[i], (64, 48));
        let err = mean_abs_diff(&out, &luma(&net));
        let unstylized = mean_abs_diff(&out, &luma(&inputs[i]));
        let turned = mean_abs_diff(&out, &luma(&turned(&net)));
        eprintln!(
            "frame {i}: luma |out − net(in)| {err:.2}; unstylized {unstylized:.2}; turned {turned:.2}"
        );
        assert!(err < 3.0 && err < unstylized.min(turned) / 2.0, "frame {i}");
    }
}

#[test]
fn a_rotated_phone_clip_comes_out_upright_in_the_shape_a_player_shows() {
    let ffmpeg = need_ffmpeg!();
    let s = Setup::new(4);
    let plain = s.path("plain.mp4");
    make_clip(
        &ffmpeg,
        &plain,
        "64x48",
        25,
        1.0,
        &["-c:v", "libx264", "-crf", "10"],
    );
    let rotated = s.path("phone.mov");
    let (p, r) = (plain.to_str().unwrap(), rotated.to_str().unwrap());
    run_ffmpeg(
        &ffmpeg,
        &["-display_rotation", "90", "-i", p, "-c", "copy", r],
    );
    assert!(banner(&ffmpeg, &rotated).contains("rotation of"));

    let output = s.path("out/upright.mov");
    assert_ok(&s.infer(&ffmpeg, args![rotated, "-o", output]));
    let info = banner(&ffmpeg, &output);
    assert_eq!(video_size(&info), (48, 64), "{info}");
    assert!(
        !info.contains("rotation"),
        "the output still asks for a rotation: {info}"
    );
    // The input as a player shows it (ffmpeg applies the rotation), through the network.
    let shown = decode_frames(&ffmpeg, &rotated, (48, 64));
    let outputs = decode_frames(&ffmpeg, &output, (48, 64));
    assert_eq!(outputs.len(), 25);
    let expected = network_output(4, &shown[10], (48, 64));
    let err = mean_abs_diff(&outputs[10], &expected);
    // The same frame turned the other way round must not match.
    let flipped: Vec<u8> = shown[10].chunks(3).rev().flatten().copied().collect();
    let wrong = mean_abs_diff(&outputs[10], &network_output(4, &flipped, (48, 64)));
    assert!(
        err < 6.0 && err < wrong / 2.0,
        "{err} vs upside down {wrong}"
    );
}

#[test]
fn variable_frame_rates_and_gif_delays_are_kept() {
    let ffmpeg = need_ffmpeg!();
    let s = Setup::new(5);
    // Every fourth frame dropped: gaps of 1/15 s among 1/30 s.
    let vfr = s.path("in/vfr.mkv");
    make_clip(
        &ffmpeg,
        &vfr,
        "64x48",
        30,
        1.0,
        &[
            "-vf",
            "select='not(eq(mod(n\\,4)\\,1))'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
        ],
    );
    // A GIF whose delays vary (0.1 s, then 0.3 s) and a still GIF, which stays a photo.
    let gif = s.path("in/anim.gif");
    run_ffmpeg(
        &ffmpeg,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=40x30:rate=10:duration=1",
            "-vf",
            "setpts='if(lt(N,5),N*0.1,0.5+(N-5)*0.3)/TB'",
            "-fps_mode",
            "passthrough",
            gif.to_str().unwrap(),
        ],
    );
    common::write_image(&s.path("in/still.gif"), 20, 10, 1);
    let out_dir = s.path("out");
    let out = s.infer(&ffmpeg, args![s.path("in"), "-o", out_dir]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("stylized 3 of 3 files"),
        "{}",
        stderr(&out)
    );

    let times_in = frame_times(&ffmpeg, &vfr);
    let gaps: Vec<f64> = times_in.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().any(|g| *g < 0.04) && gaps.iter().any(|g| *g > 0.06),
        "not a variable frame rate: {times_in:?}"
    );
    assert_same_times(&times_in, &frame_times(&ffmpeg, &out_dir.join("vfr.mkv")));
    let gif_in = frame_times(&ffmpeg, &gif);
    assert!(gif_in.windows(2).any(|w| w[1] - w[0] > 0.25), "{gif_in:?}");
    let gif_out = out_dir.join("anim.gif");
    assert_same_times(&gif_in, &frame_times(&ffmpeg, &gif_out));
    assert_eq!(video_size(&banner(&ffmpeg, &gif_out)), (40, 30));
    assert_eq!(
        common::read_rgb(&out_dir.join("still.gif")).dimensions(),
        (20, 10)
    );
}

#[test]
fn options_apply_to_videos_and_webm_is_vp9() {
    let ffmpeg = need_ffmpeg!();
    let s = Setup::new(6);
    let input = s.path("clip.webm");
    make_clip(
        &ffmpeg,
        &input,
        "96x64",
        20,
        0.5,
        &[
            "-c:v",
            "libvpx-vp9",
            "-crf",
            "10",
            "-b:v",
            "0",
            "-c:a",
            "libopus",
        ],
    );
    // Strength 0 gives the input back (up to the codec), scaled down to --max-size.
    let output = s.path("small.webm");
    assert_ok(&s.infer(
        &ffmpeg,
        args![
            input,
            "-o",
            output,
            "--strength",
            "0",
            "--max-size",
            "48",
            "--crf",
            "4"
        ],
    ));
    let info = banner(&ffmpeg, &output);
    assert!(info.contains("Video: vp9"), "{info}");
    assert!(info.contains("Audio: opus"), "{info}");
    assert_eq!(video_size(&info), (48, 32), "{info}");
    let scaled = s.path("scaled.webm");
    let (i, o) = (input.to_str().unwrap(), scaled.to_str().unwrap());
    run_ffmpeg(
        &ffmpeg,
        &[
            "-i",
            i,
            "-vf",
            "scale=48:32:flags=lanczos",
            "-c:v",
            "libvpx-vp9",
            "-crf",
            "4",
            "-b:v",
            "0",
            o,
        ],
    );
    let a = decode_frames(&ffmpeg, &output, (48, 32));
    let b = decode_frames(&ffmpeg, &scaled, (48, 32));
    assert_eq!(a.len(), 10);
    let err = mean_abs_diff(&a[5], &b[5]);
    assert!(err < 6.0, "strength 0 should give the input back: {err}");
}

#[test]
fn broken_videos_are_one_line_errors_and_the_others_are_done() {
    let ffmpeg = need_ffmpeg!();
    let s = Setup::new(7);
    let good = s.path("in/good.mp4");
    make_clip(
        &ffmpeg,
        &good,
        "32x32",
        10,
        1.0,
        &["-c:v", "libx264", "-movflags", "+faststart"],
    );
    let bytes = std::fs::read(&good).unwrap();
    // Index at the front, data cut: ffmpeg decodes what is there and only logs the loss.
    std::fs::write(s.path("in/truncated.mp4"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    std::fs::write(s.path("in/garbage.mkv"), b"this is not a video at all").unwrap();
    let sound = s.path("in/sound-only.mp4");
    run_ffmpeg(
        &ffmpeg,
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=duration=0.5",
            "-c:a",
            "aac",
            sound.to_str().unwrap(),
        ],
    );
    let out_dir = s.path("out");
    let out = s.infer(&ffmpeg, args![s.path("in"), "-o", out_dir]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 3, "{errors:?}");
    for (name, words) in [
        ("truncated.mp4", "truncated"),
        ("garbage.mkv", "not a readable video"),
        ("sound-only.mp4", "no video stream"),
    ] {
        let line = errors.iter().find(|l| l.contains(name)).unwrap();
        assert!(line.contains(words), "{line}");
        assert!(!out_dir.join(name).exists(), "{name} has an output");
    }
    assert_eq!(frame_times(&ffmpeg, &out_dir.join("good.mp4")).len(), 10);
    assert!(
        temp_files(&out_dir).is_empty(),
        "{:?}",
        temp_files(&out_dir)
    );

    // Without ffmpeg, a video is that file's error and photos are still done.
    let photo = s.path("mixed/photo.png");
    common::write_image(&photo, 16, 16, 2);
    std::fs::copy(&good, s.path("mixed/clip.mp4")).unwrap();
    let missing = s.dir.path().join("no-such-ffmpeg");
    let out = s.infer(&missing, args![s.path("mixed"), "-o", s.path("mixed-out")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("clip.mp4") && errors[0].contains("FASTSTYLE_FFMPEG"),
        "{errors:?}"
    );
    assert!(s.path("mixed-out/photo.png").exists());

    // An output equal to the input is refused.
    let out = s.infer(&ffmpeg, args![good, "-o", good]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("refusing to overwrite"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ctrl_c_during_a_video_leaves_nothing_half_written() {
    let ffmpeg = need_ffmpeg!();
    let s = Setup::new(8);
    let input = s.path("long.mp4");
    make_clip(
        &ffmpeg,
        &input,
        "160x120",
        25,
        20.0,
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let out_dir = s.path("out");
    let mut child = Command::new(common::bin("infer"))
        .args(args![
            "-c",
            s.model,
            input,
            "-o",
            out_dir.join("long.mp4"),
            "--device",
            "cpu"
        ])
        .env("FASTSTYLE_FFMPEG", &ffmpeg)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the temporary output exists (the encoder has started writing), or after
    // a while on a machine too slow to get there.
    let start = std::time::Instant::now();
    while temp_files(&out_dir).is_empty() && start.elapsed().as_secs() < 60 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("infer ended ({status}) before it could be interrupted");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if temp_files(&out_dir).is_empty() {
        eprintln!("note: interrupted before the encoder had written anything");
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        temp_files(&out_dir).is_empty(),
        "{:?}",
        temp_files(&out_dir)
    );
    assert!(!out_dir.join("long.mp4").exists());
}

/// Other ffmpeg builds that `infer` is run with, as users have them: the distribution's own
/// (scripts/setup.sh, as root, unpacks Debian's into .venv/distro-ffmpeg, off PATH), and any
/// listed in `$FASTSTYLE_TEST_FFMPEGS` (colon-separated).
fn other_ffmpegs() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::env::var_os("FASTSTYLE_TEST_FFMPEGS")
        .map(|v| std::env::split_paths(&v).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    let distro = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/distro-ffmpeg/ffmpeg");
    if distro.is_file() && !found.contains(&distro) {
        found.push(distro);
    }
    found
}

/// The first line of `ffmpeg -version`.
fn version_line(ffmpeg: &Path) -> String {
    let out = Command::new(ffmpeg).arg("-version").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn each_ffmpeg_release_keeps_exact_times_sound_and_colour_tags() {
    let tools = need_ffmpeg!();
    let mut builds = vec![tools.clone()];
    let others = other_ffmpegs();
    if others.is_empty() {
        eprintln!(
            "SKIPPED for other ffmpeg releases: none in .venv/distro-ffmpeg (scripts/setup.sh \
             as root unpacks Debian's there) or $FASTSTYLE_TEST_FFMPEGS; checking {} only",
            version_line(&tools)
        );
    }
    builds.extend(others);
    let s = Setup::new(9);
    // BT.601 (PAL) tags, sound, a variable frame rate: every fourth frame dropped.
    let input = s.path("pal.mp4");
    make_clip(
        &tools,
        &input,
        "64x48",
        30,
        1.0,
        &[
            "-vf",
            "select='not(eq(mod(n\\,4)\\,1))',setparams=color_primaries=bt470bg:\
             color_trc=smpte170m:colorspace=bt470bg:range=tv",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
        ],
    );
    let times = frame_times(&tools, &input);
    let sound = audio_packets(&tools, &input);
    let samples = decoded_samples(&tools, &input);
    assert!(banner(&tools, &input).contains("bt470bg/bt470bg/smpte170m"));
    for (i, build) in builds.iter().enumerate() {
        let version = version_line(build);
        eprintln!("infer with {version}");
        let output = s.path(&format!("out{i}/pal.mp4"));
        let out = s.infer(build, args![input, "-o", output]);
        assert!(out.status.success(), "{version}: {}", stderr(&out));
        assert_same_times(&times, &frame_times(&tools, &output));
        // The sound's packets are copied byte for byte. ffmpeg 5.1's mp4 muxer ends the
        // sound's edit list at its nominal length where later releases keep the whole last
        // packet: the last packet may gain an end trim, which must stay under one packet.
        let copied = audio_packets(&tools, &output);
        assert_eq!(
            without_last_side_data(sound.clone()),
            without_last_side_data(copied),
            "{version}: sound"
        );
        let got = decoded_samples(&tools, &output);
        assert!(
            (samples - got).abs() < 1024,
            "{version}: {got} sound samples, not {samples}"
        );
        let info = banner(&tools, &output);
        assert!(
            info.contains("bt470bg/bt470bg/smpte170m"),
            "{version}: {info}"
        );
        // Scaled down, into Matroska: the size, the frame count and the frame spacing kept.
        let small = s.path(&format!("out{i}/small.mkv"));
        let out = s.infer(build, args![input, "-o", small, "--max-size", "32"]);
        assert!(out.status.success(), "{version}: {}", stderr(&out));
        assert_eq!(video_size(&banner(&tools, &small)), (32, 24), "{version}");
        let gaps = |t: &[f64]| t.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>();
        let small_times = frame_times(&tools, &small);
        assert_eq!(small_times.len(), times.len(), "{version}");
        // (ffmpeg before 6 shifts a whole Matroska file by the sound's priming delay, and
        // 4.x its first frame alone: the spacing after the first frame is compared.)
        // Matroska keeps times in milliseconds: the spacing is compared to that precision.
        let (want, got) = (&gaps(&times)[1..], &gaps(&small_times)[1..]);
        assert_eq!(want.len(), got.len(), "{version}");
        for (k, (x, y)) in want.iter().zip(got).enumerate() {
            assert!((x - y).abs() <= 1e-3, "{version}: gap {k}: {x} s vs {y} s");
        }
    }
}

#[test]
fn an_ffmpeg_too_old_is_refused_in_one_line_or_passed_over_on_path() {
    let tools = need_ffmpeg!();
    let s = Setup::new(10);
    let input = s.path("clip.mp4");
    make_clip(&tools, &input, "32x24", 10, 0.5, &["-c:v", "libx264"]);
    // A stand-in for an old release: it only says its version.
    let old_dir = s.path("old");
    std::fs::create_dir_all(&old_dir).unwrap();
    let old = old_dir.join("ffmpeg");
    std::fs::write(
        &old,
        "#!/bin/sh\necho 'ffmpeg version 3.4.8-0ubuntu0.2 Copyright (c) 2000-2020'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.infer(&old, args![input, "-o", s.path("a.mp4")]);
    assert!(!out.status.success());
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{}", stderr(&out));
    assert!(
        lines[0].contains("ffmpeg 3.4") && lines[0].contains("4.2 or newer"),
        "{}",
        lines[0]
    );
    // Found on PATH instead, it gives way to the project's own (.venv) ffmpeg.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/ffmpeg");
    if !venv.is_file() {
        eprintln!("SKIPPED the PATH part: no .venv/bin/ffmpeg (scripts/setup.sh links it)");
        return;
    }
    let path = std::env::join_paths(
        std::iter::once(old_dir.clone()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    let out = Command::new(common::bin("infer"))
        .args(args![
            "-c",
            s.model,
            "--device",
            "cpu",
            input,
            "-o",
            s.path("b.mp4")
        ])
        .env_remove("FASTSTYLE_FFMPEG")
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ffmpeg 3.4") && stderr(&out).contains("using"),
        "{}",
        stderr(&out)
    );
    assert!(s.path("b.mp4").is_file());
}
