//! Writing NUT for ffmpeg to read: the headers, then every frame with its pts.
use super::*;
use anyhow::{ensure, Context, Result};
use std::io::Write;

pub(super) fn put_v(out: &mut Vec<u8>, value: u64) {
    let mut groups = 1;
    while groups < 10 && value >> (7 * groups) != 0 {
        groups += 1;
    }
    for i in (1..groups).rev() {
        out.push(0x80 | ((value >> (7 * i)) & 0x7F) as u8);
    }
    out.push((value & 0x7F) as u8);
}

pub(super) fn put_s(out: &mut Vec<u8>, value: i64) {
    let v = if value > 0 {
        2 * value as u64 - 1
    } else {
        2 * value.unsigned_abs()
    };
    put_v(out, v);
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_v(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends a packet: startcode, forward pointer, body and the body's checksum.
fn put_packet(out: &mut Vec<u8>, startcode: u64, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&startcode.to_be_bytes());
    let forward = body.len() as u64 + 4;
    put_v(out, forward);
    if forward > 4096 {
        let header_crc = crc(&out[start..]);
        out.extend_from_slice(&header_crc.to_be_bytes());
    }
    out.extend_from_slice(body);
    out.extend_from_slice(&crc(body).to_be_bytes());
}

/// Writes one raw RGB24 video stream as NUT for ffmpeg to read (`-f nut -i pipe:0`).
pub struct Writer<W: Write> {
    output: W,
    info: StreamInfo,
    buf: Vec<u8>,
    last_pts: Option<i64>,
}

/// The only valid frame code this writer uses: every field coded in the frame header.
const FRAME_CODE: u8 = 1;

impl<W: Write> Writer<W> {
    /// Writes the headers of a stream described by `info`.
    pub fn new(mut output: W, info: StreamInfo) -> Result<Self> {
        let (num, den) = reduce(info.time_base);
        ensure!(
            num > 0 && den > 0 && num < 1 << 31 && den < 1 << 31,
            "time base {num}/{den} cannot be stored"
        );
        let mut out = ID_STRING.to_vec();

        let mut main = Vec::new();
        put_v(&mut main, 3); // version
        put_v(&mut main, 1); // streams
        put_v(&mut main, 65536); // max distance between syncpoints
        put_v(&mut main, 1); // time bases
        put_v(&mut main, num);
        put_v(&mut main, den);
        // Frame codes: 0 invalid; 1 a keyframe with pts, size and checksum coded; the rest
        // ('N' skipped by the format) invalid.
        for (flags, count) in [
            (FLAG_INVALID, 1),
            (FLAG_KEY | FLAG_CODED_PTS | FLAG_SIZE_MSB | FLAG_CHECKSUM, 1),
            (FLAG_INVALID, 253),
        ] {
            put_v(&mut main, flags);
            put_v(&mut main, 6); // fields: pts delta, size mul, stream, size lsb, reserved, count
            put_s(&mut main, 0);
            put_v(&mut main, 1);
            put_v(&mut main, 0);
            put_v(&mut main, 0);
            put_v(&mut main, 0);
            put_v(&mut main, count);
        }
        // No elision headers, but the count must be there: without it ffmpeg has none, not
        // even the empty one that every frame refers to.
        put_v(&mut main, 0);
        put_packet(&mut out, MAIN_STARTCODE, &main);

        let mut stream = Vec::new();
        put_v(&mut stream, 0); // stream id
        put_v(&mut stream, 0); // class: video
        put_str(&mut stream, &RGB24);
        put_v(&mut stream, 0); // time base id
        put_v(&mut stream, 16 - 1); // msb_pts_shift (unused: full pts coded)
        put_v(&mut stream, 1 << 30); // max pts distance
        put_v(&mut stream, 0); // decode delay
        put_v(&mut stream, 0); // flags
        put_v(&mut stream, 0); // no extradata
        put_v(&mut stream, u64::from(info.width));
        put_v(&mut stream, u64::from(info.height));
        put_v(&mut stream, info.sample_aspect.0);
        put_v(&mut stream, info.sample_aspect.1);
        put_v(&mut stream, 0); // colourspace: unknown
        put_packet(&mut out, STREAM_STARTCODE, &stream);

        if let Some(rate) = &info.frame_rate {
            let mut meta = Vec::new();
            put_v(&mut meta, 1); // stream 0 + 1
            put_s(&mut meta, 0); // no chapter
            put_v(&mut meta, 0);
            put_v(&mut meta, 0);
            put_v(&mut meta, 1);
            put_str(&mut meta, b"r_frame_rate");
            put_s(&mut meta, -1);
            put_str(&mut meta, rate.as_bytes());
            put_packet(&mut out, INFO_STARTCODE, &meta);
        }
        output
            .write_all(&out)
            .context("cannot send frames to the encoder")?;
        Ok(Self {
            output,
            info,
            buf: Vec::new(),
            last_pts: None,
        })
    }

    /// Writes one frame (`width × height × 3` bytes); timestamps must increase.
    pub fn write_frame(&mut self, pts: i64, rgb: &[u8]) -> Result<()> {
        ensure!(
            rgb.len() == self.info.frame_bytes(),
            "frame of {} bytes, expected {}",
            rgb.len(),
            self.info.frame_bytes()
        );
        ensure!(pts >= 0, "negative timestamp {pts}");
        if let Some(last) = self.last_pts {
            ensure!(pts > last, "timestamp {pts} after {last}: not increasing");
        }
        self.buf.clear();
        // A syncpoint before every frame: frames are larger than the distance a reader
        // allows between a syncpoint and a frame header.
        let mut sync = Vec::new();
        put_v(&mut sync, pts as u64); // global key pts (one time base)
        put_v(&mut sync, 0); // back pointer: this syncpoint
        put_packet(&mut self.buf, SYNCPOINT_STARTCODE, &sync);
        let header_start = self.buf.len();
        self.buf.push(FRAME_CODE);
        put_v(&mut self.buf, pts as u64 + (1 << 15)); // full pts (≥ 1 << msb_pts_shift)
        put_v(&mut self.buf, rgb.len() as u64);
        let sum = crc(&self.buf[header_start..]);
        self.buf.extend_from_slice(&sum.to_be_bytes());
        self.output
            .write_all(&self.buf)
            .and_then(|_| self.output.write_all(rgb))
            .context("cannot send frames to the encoder")?;
        self.last_pts = Some(pts);
        Ok(())
    }

    /// Flushes and returns the output (dropping it closes a pipe).
    pub fn finish(mut self) -> Result<W> {
        self.output
            .flush()
            .context("cannot send frames to the encoder")?;
        Ok(self.output)
    }
}

fn reduce((n, d): (u64, u64)) -> (u64, u64) {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = gcd(n, d).max(1);
    (n / g, d / g)
}
