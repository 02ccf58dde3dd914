//! Raw RGB frames with their timestamps through a pipe, in NUT, ffmpeg's own container.
//!
//! A raw-video pipe carries pixels but no timestamps, so variable frame rates and the exact
//! timing of every frame would be lost on the way through the network. NUT carries each
//! frame's pts in the stream's exact time base (a rational), costs a few bytes a frame, and
//! ffmpeg both writes it (the decoder's output) and reads it (the encoder's input). Only what
//! this needs is here: one uncompressed RGB24 video stream.
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::io::{Read, Write};

const ID_STRING: &[u8] = b"nut/multimedia container\0";
const MAIN_STARTCODE: u64 = 0x7A56_1F5F_04AD + ((((b'N' as u64) << 8) + b'M' as u64) << 48);
const STREAM_STARTCODE: u64 = 0x1140_5BF2_F9DB + ((((b'N' as u64) << 8) + b'S' as u64) << 48);
const SYNCPOINT_STARTCODE: u64 = 0xE4AD_EECA_4569 + ((((b'N' as u64) << 8) + b'K' as u64) << 48);
const INFO_STARTCODE: u64 = 0xAB68_B596_BA78 + ((((b'N' as u64) << 8) + b'I' as u64) << 48);

const FLAG_KEY: u64 = 1;
const FLAG_EOR: u64 = 2;
const FLAG_CODED_PTS: u64 = 8;
const FLAG_STREAM_ID: u64 = 16;
const FLAG_SIZE_MSB: u64 = 32;
const FLAG_CHECKSUM: u64 = 64;
const FLAG_RESERVED: u64 = 128;
const FLAG_SM_DATA: u64 = 256;
const FLAG_HEADER_IDX: u64 = 1024;
const FLAG_MATCH_TIME: u64 = 2048;
const FLAG_CODED: u64 = 4096;
const FLAG_INVALID: u64 = 8192;
/// Main-header flag: frames may lie further from their syncpoint than `max_distance`.
const MAIN_FLAG_BROADCAST: u64 = 1;

/// The fourcc of packed 8-bit RGB in NUT (ffmpeg's `RGB[24]`).
const RGB24: [u8; 4] = [b'R', b'G', b'B', 24];
/// Largest header packet accepted (frames are read separately).
const MAX_HEADER: u64 = 1 << 20;
/// Largest frame accepted: a 16384×16384 RGB picture.
const MAX_FRAME: u64 = 16384 * 16384 * 3;

/// The video stream: picture size, time base and what players need to show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Seconds per pts tick, as (numerator, denominator).
    pub time_base: (u64, u64),
    /// Sample (pixel) aspect ratio; (0, 0) when unknown.
    pub sample_aspect: (u64, u64),
    /// The nominal frame rate as ffmpeg states it (`30000/1001`), when known.
    pub frame_rate: Option<String>,
}

impl StreamInfo {
    /// Bytes in one RGB24 frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
}

/// One decoded picture: RGB24 rows, top first, and its presentation time in time-base ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Presentation timestamp.
    pub pts: i64,
    /// `width × height × 3` bytes.
    pub rgb: Vec<u8>,
}

/// CRC-32 with the polynomial 0x04C11DB7, most significant bit first, initial value 0: NUT's
/// checksum.
fn crc(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = (i as u32) << 24;
            for _ in 0..8 {
                c = if c & 0x8000_0000 != 0 {
                    (c << 1) ^ 0x04C1_1DB7
                } else {
                    c << 1
                };
            }
            *slot = c;
        }
        t
    });
    bytes.iter().fold(0u32, |c, &b| {
        (c << 8) ^ table[((c >> 24) as u8 ^ b) as usize]
    })
}

fn put_v(out: &mut Vec<u8>, value: u64) {
    let mut groups = 1;
    while groups < 10 && value >> (7 * groups) != 0 {
        groups += 1;
    }
    for i in (1..groups).rev() {
        out.push(0x80 | ((value >> (7 * i)) & 0x7F) as u8);
    }
    out.push((value & 0x7F) as u8);
}

fn put_s(out: &mut Vec<u8>, value: i64) {
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

/// A cursor over a packet body.
struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Body<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| anyhow!("NUT packet ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    fn v(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for _ in 0..10 {
            let b = self.byte()?;
            value = (value << 7) | u64::from(b & 0x7F);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("NUT number too long")
    }

    fn s(&mut self) -> Result<i64> {
        let v = self.v()?.wrapping_add(1);
        Ok(if v & 1 == 1 {
            -((v >> 1) as i64)
        } else {
            (v >> 1) as i64
        })
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n)?;
        ensure!(n <= self.remaining(), "NUT packet ends early");
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn string(&mut self) -> Result<&'a [u8]> {
        let n = self.v()?;
        self.take(n)
    }
}

/// One entry of the main header's frame-code table.
#[derive(Clone, Copy, Default)]
struct FrameCode {
    flags: u64,
    stream_id: u64,
    size_mul: u64,
    size_lsb: u64,
    pts_delta: i64,
    reserved_count: u64,
    header_idx: u64,
}

/// Reads ffmpeg's NUT output of one raw RGB24 video stream (`-c:v rawvideo -pix_fmt rgb24
/// -f nut`), frame by frame.
pub struct Reader<R: Read> {
    input: R,
    info: StreamInfo,
    codes: Vec<FrameCode>,
    elision: Vec<Vec<u8>>,
    time_bases: Vec<(u64, u64)>,
    /// Index of the video stream's time base in `time_bases`.
    stream_tb: usize,
    msb_pts_shift: u32,
    last_pts: i64,
    broadcast: bool,
    /// A startcode already read while looking for a frame.
    pending: Option<u64>,
}

impl<R: Read> Reader<R> {
    /// Reads the headers, up to the first syncpoint.
    pub fn open(mut input: R) -> Result<Self> {
        let mut id = [0u8; 25];
        read_exact_or(&mut input, &mut id, "no NUT stream (ffmpeg wrote nothing)")?;
        ensure!(id == ID_STRING, "not a NUT stream");
        let mut reader = Self {
            input,
            info: StreamInfo {
                width: 0,
                height: 0,
                time_base: (1, 1),
                sample_aspect: (0, 0),
                frame_rate: None,
            },
            codes: Vec::new(),
            elision: vec![Vec::new()],
            time_bases: Vec::new(),
            stream_tb: 0,
            msb_pts_shift: 0,
            last_pts: 0,
            broadcast: false,
            pending: None,
        };
        let mut have_stream = false;
        loop {
            let code = reader.startcode()?;
            match code {
                MAIN_STARTCODE => {
                    let body = reader.packet(code)?;
                    reader.main_header(&body)?;
                }
                STREAM_STARTCODE => {
                    ensure!(
                        !reader.codes.is_empty(),
                        "NUT stream header before main header"
                    );
                    let body = reader.packet(code)?;
                    have_stream |= reader.stream_header(&body)?;
                }
                INFO_STARTCODE => {
                    let body = reader.packet(code)?;
                    reader.info_packet(&body)?;
                }
                SYNCPOINT_STARTCODE => {
                    ensure!(have_stream, "NUT stream without a video stream header");
                    reader.pending = Some(code);
                    return Ok(reader);
                }
                _ => {
                    let _ = reader.packet(code)?;
                }
            }
        }
    }

    /// The video stream's description.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// The next frame, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            let code = match self.pending.take() {
                Some(code) => code,
                None => {
                    let mut b = [0u8; 1];
                    match self.input.read(&mut b) {
                        Ok(0) => return Ok(None),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e).context("cannot read the decoded frames"),
                    }
                    if b[0] != b'N' {
                        if let Some(frame) = self.frame(b[0])? {
                            return Ok(Some(frame));
                        }
                        continue;
                    }
                    let mut rest = [0u8; 7];
                    read_exact_or(&mut self.input, &mut rest, "NUT stream ends in a startcode")?;
                    let mut all = [b'N'; 8];
                    all[1..].copy_from_slice(&rest);
                    u64::from_be_bytes(all)
                }
            };
            let body = self.packet(code)?;
            if code == SYNCPOINT_STARTCODE {
                self.syncpoint(&body)?;
            } else if code == INFO_STARTCODE {
                self.info_packet(&body)?;
            }
        }
    }

    fn startcode(&mut self) -> Result<u64> {
        if let Some(code) = self.pending.take() {
            return Ok(code);
        }
        let mut b = [0u8; 8];
        read_exact_or(
            &mut self.input,
            &mut b,
            "NUT stream ends inside its headers",
        )?;
        ensure!(b[0] == b'N', "damaged NUT stream (no startcode)");
        Ok(u64::from_be_bytes(b))
    }

    /// Reads a packet's forward pointer, body and checksum; returns the body.
    fn packet(&mut self, startcode: u64) -> Result<Vec<u8>> {
        let mut header = startcode.to_be_bytes().to_vec();
        let forward = self.read_v(Some(&mut header))?;
        ensure!(
            (4..=MAX_HEADER).contains(&forward),
            "damaged NUT stream (packet of {forward} bytes)"
        );
        if forward > 4096 {
            let mut c = [0u8; 4];
            read_exact_or(&mut self.input, &mut c, "NUT stream ends in a packet")?;
            ensure!(
                u32::from_be_bytes(c) == crc(&header),
                "damaged NUT stream (packet header checksum)"
            );
        }
        let mut body = vec![0u8; forward as usize];
        read_exact_or(&mut self.input, &mut body, "NUT stream ends in a packet")?;
        let (content, sum) = body.split_at(body.len() - 4);
        ensure!(
            u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]) == crc(content),
            "damaged NUT stream (packet checksum)"
        );
        body.truncate(body.len() - 4);
        Ok(body)
    }

    fn read_v(&mut self, mut copy: Option<&mut Vec<u8>>) -> Result<u64> {
        let mut value = 0u64;
        for _ in 0..10 {
            let mut b = [0u8; 1];
            read_exact_or(&mut self.input, &mut b, "NUT stream ends in a number")?;
            if let Some(c) = copy.as_deref_mut() {
                c.push(b[0]);
            }
            value = (value << 7) | u64::from(b[0] & 0x7F);
            if b[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("damaged NUT stream (number too long)")
    }

    fn main_header(&mut self, body: &[u8]) -> Result<()> {
        let mut b = Body::new(body);
        let version = b.v()?;
        ensure!(
            (2..=4).contains(&version),
            "NUT version {version} not supported"
        );
        if version > 3 {
            b.v()?; // minor version
        }
        let streams = b.v()?;
        ensure!((1..=256).contains(&streams), "NUT stream count {streams}");
        b.v()?; // max_distance: frames are read wherever they are
        let count = b.v()?;
        ensure!((1..=256).contains(&count), "NUT time base count {count}");
        self.time_bases = (0..count)
            .map(|_| Ok((b.v()?, b.v()?)))
            .collect::<Result<_>>()?;
        ensure!(
            self.time_bases.iter().all(|&(n, d)| n > 0 && d > 0),
            "NUT time base of zero"
        );
        let mut codes = vec![FrameCode::default(); 256];
        let (mut pts, mut mul, mut stream, mut head) = (0i64, 1u64, 0u64, 0u64);
        let mut i = 0usize;
        while i < 256 {
            let flags = b.v()?;
            let fields = b.v()?;
            if fields > 0 {
                pts = b.s()?;
            }
            if fields > 1 {
                mul = b.v()?;
            }
            if fields > 2 {
                stream = b.v()?;
            }
            let size = if fields > 3 { b.v()? } else { 0 };
            let reserved = if fields > 4 { b.v()? } else { 0 };
            let count = if fields > 5 {
                b.v()?
            } else {
                mul.saturating_sub(size)
            };
            if fields > 6 {
                b.s()?; // match time delta
            }
            if fields > 7 {
                head = b.v()?;
            }
            for _ in 8..fields {
                b.v()?;
            }
            let room = 256 - usize::from(i <= usize::from(b'N')) - i;
            ensure!(
                count > 0 && count as usize <= room && stream < streams,
                "damaged NUT frame-code table"
            );
            let mut j = 0u64;
            while j < count {
                if i == usize::from(b'N') {
                    codes[i].flags = FLAG_INVALID;
                    i += 1;
                    continue;
                }
                codes[i] = FrameCode {
                    flags,
                    stream_id: stream,
                    size_mul: mul,
                    size_lsb: size + j,
                    pts_delta: pts,
                    reserved_count: reserved,
                    header_idx: head,
                };
                i += 1;
                j += 1;
            }
        }
        codes[usize::from(b'N')].flags = FLAG_INVALID;
        self.elision = vec![Vec::new()];
        if b.remaining() > 0 {
            let headers = b.v()? + 1;
            ensure!(headers < 128, "damaged NUT elision headers");
            for _ in 1..headers {
                let len = b.v()?;
                ensure!(len > 0 && len < 256, "damaged NUT elision header");
                self.elision.push(b.take(len)?.to_vec());
            }
        }
        if version > 3 && b.remaining() > 0 {
            self.broadcast = b.v()? & MAIN_FLAG_BROADCAST != 0;
        }
        self.codes = codes;
        Ok(())
    }

    /// Reads a stream header; true when it is the video stream 0 this reader wants.
    fn stream_header(&mut self, body: &[u8]) -> Result<bool> {
        let mut b = Body::new(body);
        let id = b.v()?;
        let class = b.v()?;
        let fourcc = b.string()?.to_vec();
        let tb = usize::try_from(b.v()?)?;
        ensure!(
            tb < self.time_bases.len(),
            "NUT stream with an unknown time base"
        );
        let shift = b.v()?;
        ensure!(shift < 16, "NUT pts shift {shift}");
        b.v()?; // max pts distance
        b.v()?; // decode delay
        b.v()?; // stream flags
        let extradata = b.v()?;
        b.take(extradata)?;
        if id != 0 {
            return Ok(false);
        }
        ensure!(class == 0, "the decoded stream is not video");
        ensure!(
            fourcc == RGB24,
            "the decoded stream is not RGB24 (fourcc {fourcc:?})"
        );
        let width = u32::try_from(b.v()?)?;
        let height = u32::try_from(b.v()?)?;
        ensure!(
            width > 0 && height > 0,
            "NUT video of size {width}×{height}"
        );
        let sample_aspect = (b.v()?, b.v()?);
        self.info.width = width;
        self.info.height = height;
        self.info.sample_aspect = sample_aspect;
        self.info.time_base = self.time_bases[tb];
        self.stream_tb = tb;
        self.msb_pts_shift = shift as u32;
        Ok(true)
    }

    fn info_packet(&mut self, body: &[u8]) -> Result<()> {
        let mut b = Body::new(body);
        let stream_plus1 = b.v()?;
        b.s()?; // chapter id
        b.v()?; // chapter start
        b.v()?; // chapter length
        let count = b.v()?;
        for _ in 0..count {
            let name = b.string()?;
            let kind = b.s()?;
            match kind {
                -1 => {
                    let value = b.string()?;
                    if stream_plus1 == 1 && name == b"r_frame_rate" {
                        self.info.frame_rate = std::str::from_utf8(value).ok().map(str::to_owned);
                    }
                }
                -2 => {
                    b.string()?;
                    b.string()?;
                }
                -3 => {
                    b.s()?;
                }
                -4 => {
                    b.v()?;
                }
                k if k < -4 => {
                    b.s()?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn syncpoint(&mut self, body: &[u8]) -> Result<()> {
        let mut b = Body::new(body);
        let global = b.v()?;
        let count = self.time_bases.len() as u64;
        let from = self.time_bases[(global % count) as usize];
        let ticks = i64::try_from(global / count)?;
        self.last_pts = rescale(ticks, from, self.time_bases[self.stream_tb]);
        Ok(())
    }

    /// Reads the frame whose code was just read; `None` for frames of other streams.
    fn frame(&mut self, code: u8) -> Result<Option<Frame>> {
        let fc = self.codes[usize::from(code)];
        let mut flags = fc.flags;
        ensure!(
            flags & FLAG_INVALID == 0,
            "damaged NUT stream (frame code {code})"
        );
        if flags & FLAG_CODED != 0 {
            flags ^= self.read_v(None)?;
        }
        let stream = if flags & FLAG_STREAM_ID != 0 {
            self.read_v(None)?
        } else {
            fc.stream_id
        };
        let pts = if flags & FLAG_CODED_PTS != 0 {
            let coded = self.read_v(None)?;
            let msb = 1u64 << self.msb_pts_shift;
            if coded < msb {
                let mask = msb as i64 - 1;
                let delta = self.last_pts - mask / 2;
                ((coded as i64 - delta) & mask) + delta
            } else {
                i64::try_from(coded - msb)?
            }
        } else {
            self.last_pts + fc.pts_delta
        };
        let mut size = fc.size_lsb;
        if flags & FLAG_SIZE_MSB != 0 {
            size += fc.size_mul * self.read_v(None)?;
        }
        if flags & FLAG_MATCH_TIME != 0 {
            self.read_v(None)?;
        }
        let mut header_idx = fc.header_idx;
        if flags & FLAG_HEADER_IDX != 0 {
            header_idx = self.read_v(None)?;
        }
        let reserved = if flags & FLAG_RESERVED != 0 {
            self.read_v(None)?
        } else {
            fc.reserved_count
        };
        for _ in 0..reserved.min(256) {
            self.read_v(None)?;
        }
        if flags & FLAG_CHECKSUM != 0 {
            let mut c = [0u8; 4];
            read_exact_or(&mut self.input, &mut c, "NUT stream ends in a frame header")?;
        }
        let header_idx = if size > 4096 { 0 } else { header_idx as usize };
        let elided = self
            .elision
            .get(header_idx)
            .ok_or_else(|| anyhow!("damaged NUT stream (elision header {header_idx})"))?
            .clone();
        let stored = size
            .checked_sub(elided.len() as u64)
            .ok_or_else(|| anyhow!("damaged NUT stream (frame smaller than its header)"))?;
        ensure!(stored <= MAX_FRAME, "NUT frame of {stored} bytes");
        let mut data = elided;
        let start = data.len();
        data.resize(start + stored as usize, 0);
        read_exact_or(
            &mut self.input,
            &mut data[start..],
            "the decoded video ends inside a frame",
        )?;
        if flags & FLAG_SM_DATA != 0 {
            let skip = side_data_len(&data[start..])?;
            data.drain(start..start + skip);
        }
        self.last_pts = pts;
        if stream != 0 || flags & FLAG_EOR != 0 {
            return Ok(None);
        }
        ensure!(
            data.len() == self.info.frame_bytes(),
            "decoded frame of {} bytes, expected {} ({}×{} RGB)",
            data.len(),
            self.info.frame_bytes(),
            self.info.width,
            self.info.height
        );
        Ok(Some(Frame { pts, rgb: data }))
    }
}

/// Length of the side data and metadata blocks that open a frame with `FLAG_SM_DATA`.
fn side_data_len(data: &[u8]) -> Result<usize> {
    let mut b = Body::new(data);
    for _ in 0..2 {
        let count = b.v()?;
        for _ in 0..count {
            b.string()?;
            match b.s()? {
                -1 => {
                    b.string()?;
                }
                -2 => {
                    b.string()?;
                    let n = b.v()?;
                    b.take(n)?;
                }
                -3 => {
                    b.s()?;
                }
                -4 => {
                    b.v()?;
                }
                k if k < -4 => {
                    b.s()?;
                }
                _ => {}
            }
        }
    }
    Ok(b.pos)
}

/// `ticks` of time base `from` in time base `to`, rounded to the nearest tick.
fn rescale(ticks: i64, from: (u64, u64), to: (u64, u64)) -> i64 {
    if from == to {
        return ticks;
    }
    let num = i128::from(ticks) * i128::from(from.0) * i128::from(to.1);
    let den = i128::from(from.1) * i128::from(to.0);
    let q = (2 * num + den.signum() * den.abs()).div_euclid(2 * den.abs());
    q as i64
}

fn read_exact_or(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            anyhow!("{what}")
        } else {
            anyhow!("{what}: {e}")
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> StreamInfo {
        StreamInfo {
            width: 5,
            height: 3,
            time_base: (1001, 30000),
            sample_aspect: (4, 3),
            frame_rate: Some("30000/1001".into()),
        }
    }

    #[test]
    fn crc_matches_the_reference_value() {
        // CRC-32/MPEG-2 without its initial 0xFFFFFFFF: a known check value of "123456789".
        assert_eq!(crc(b"123456789"), 0x89A1_897F);
        // A body followed by its checksum leaves no remainder.
        let mut b = b"faststyle".to_vec();
        let c = crc(&b);
        b.extend_from_slice(&c.to_be_bytes());
        assert_eq!(crc(&b), 0);
    }

    #[test]
    fn numbers_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX >> 1] {
            let mut out = Vec::new();
            put_v(&mut out, v);
            assert_eq!(Body::new(&out).v().unwrap(), v);
        }
        for s in [0i64, 1, -1, 63, -64, 1 << 40, -(1 << 40)] {
            let mut out = Vec::new();
            put_s(&mut out, s);
            assert_eq!(Body::new(&out).s().unwrap(), s);
        }
    }

    #[test]
    fn written_frames_read_back_with_their_timestamps() {
        let info = info();
        let frames: Vec<Frame> = [0i64, 1, 3, 4, 40, 1_000_000]
            .iter()
            .map(|&pts| Frame {
                pts,
                rgb: (0..45).map(|i| (i as i64 * 7 + pts) as u8).collect(),
            })
            .collect();
        let mut w = Writer::new(Vec::new(), info.clone()).unwrap();
        for f in &frames {
            w.write_frame(f.pts, &f.rgb).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut r = Reader::open(bytes.as_slice()).unwrap();
        assert_eq!(r.info(), &info);
        let mut back = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            back.push(f);
        }
        assert_eq!(back, frames);
    }

    #[test]
    fn damaged_streams_are_errors() {
        let mut w = Writer::new(Vec::new(), info()).unwrap();
        w.write_frame(0, &[9; 45]).unwrap();
        w.write_frame(1, &[8; 45]).unwrap();
        let bytes = w.finish().unwrap();
        // Cut inside the second frame.
        let mut r = Reader::open(&bytes[..bytes.len() - 10]).unwrap();
        assert!(r.next_frame().unwrap().is_some());
        let err = r.next_frame().unwrap_err().to_string();
        assert!(err.contains("ends inside a frame"), "{err}");
        // A flipped bit in the main header.
        let mut bad = bytes.clone();
        bad[40] ^= 0x10;
        assert!(Reader::open(bad.as_slice()).is_err());
        assert!(Reader::open(&b""[..]).is_err());
        // Timestamps must increase.
        let mut w = Writer::new(Vec::new(), info()).unwrap();
        w.write_frame(5, &[0; 45]).unwrap();
        assert!(w.write_frame(5, &[0; 45]).is_err());
    }

    #[test]
    fn rescale_rounds_to_the_nearest_tick() {
        assert_eq!(rescale(3, (1, 10), (1, 100)), 30);
        assert_eq!(rescale(1, (1, 3), (1, 10)), 3);
        assert_eq!(rescale(2, (1, 3), (1, 10)), 7);
        assert_eq!(rescale(-2, (1, 3), (1, 10)), -7);
    }
}
