//! Reading ffmpeg's NUT output: packets, the frame-code table and frames with their pts.
use super::*;
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::io::Read;

/// A cursor over a packet body.
pub(super) struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Body<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
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

    pub(super) fn v(&mut self) -> Result<u64> {
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

    pub(super) fn s(&mut self) -> Result<i64> {
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
pub(super) fn rescale(ticks: i64, from: (u64, u64), to: (u64, u64)) -> i64 {
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
