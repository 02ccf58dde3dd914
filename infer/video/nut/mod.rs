//! Raw RGB frames with their timestamps through a pipe, in NUT, ffmpeg's own container.
//!
//! A raw-video pipe carries pixels but no timestamps, so variable frame rates and the exact
//! timing of every frame would be lost on the way through the network. NUT carries each
//! frame's pts in the stream's exact time base (a rational), costs a few bytes a frame, and
//! ffmpeg both writes it (the decoder's output) and reads it (the encoder's input). Only what
//! this needs is here: one uncompressed RGB24 video stream.

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

mod read;
mod write;

pub use read::Reader;
pub use write::Writer;

#[cfg(test)]
mod tests {
    use super::read::{rescale, Body};
    use super::write::{put_s, put_v};
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
