//! Synthetic media, without IO: Opus-sized audio packets and VP8 simulcast
//! frames whose payloads carry a [`Stamp`] (send time and a counter), so a
//! subscriber can measure end-to-end latency and loss.
//!
//! Payload layout, after the codec's own header:
//! `b"FKst"` magic, send time as u64 big-endian microseconds since the UNIX
//! epoch, a u32 big-endian per-stream counter, then filler bytes.
//!
//! - Audio: a one-byte Opus TOC (config 15, 20 ms, mono, one frame), then
//!   the stamp; 60 to 120 bytes, one packet every 20 ms, RTP clock 48 kHz.
//! - Video: the VP8 payload descriptor (RFC 7741 §4.2, 15-bit PictureID);
//!   the first packet of a frame also carries the VP8 frame tag (and, on a
//!   keyframe, the start code and dimensions), then the stamp. Packets are
//!   at most [`MAX_VIDEO_PAYLOAD`] bytes; RTP clock 90 kHz.
//!
//! Generators write into a caller-owned buffer and hand each packet to a
//! callback: no allocation per packet.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// First bytes of every stamp.
pub const STAMP_MAGIC: [u8; 4] = *b"FKst";
/// Length of a stamp in bytes.
pub const STAMP_LEN: usize = 16;
/// Interval between audio packets.
pub const AUDIO_PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// RTP clock rate of Opus, Hz.
pub const AUDIO_CLOCK_RATE: u32 = 48_000;
/// RTP clock rate of video, Hz.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// Largest video RTP payload, bytes (descriptor included).
pub const MAX_VIDEO_PAYLOAD: usize = 1200;
/// Opus TOC byte: config 15 (hybrid fullband, 20 ms), mono, code 0.
const OPUS_TOC: u8 = 15 << 3;
/// VP8 payload descriptor length as written here (X, I, 15-bit PictureID).
const VP8_DESCRIPTOR_LEN: usize = 4;

/// What a synthetic payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, microseconds since the UNIX epoch.
    pub sent_unix_micros: u64,
    /// Per-stream packet counter, from 0.
    pub counter: u32,
}

/// The kind of a synthetic payload (selects where its stamp sits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// Opus: a TOC byte, then the stamp.
    Opus,
    /// VP8: payload descriptor (and frame header on a frame's first packet).
    Vp8,
}

fn clock_anchor() -> (Instant, u64) {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    *ANCHOR.get_or_init(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        (Instant::now(), unix)
    })
}

/// Microseconds since the UNIX epoch at `t`, from a process-wide anchor
/// (one `SystemTime` read, then monotonic time): cheap per packet.
pub fn unix_micros_at(t: Instant) -> u64 {
    let (at, unix) = clock_anchor();
    if t >= at {
        unix + (t - at).as_micros() as u64
    } else {
        unix.saturating_sub((at - t).as_micros() as u64)
    }
}

fn push_stamp(buf: &mut Vec<u8>, stamp: Stamp) {
    buf.extend_from_slice(&STAMP_MAGIC);
    buf.extend_from_slice(&stamp.sent_unix_micros.to_be_bytes());
    buf.extend_from_slice(&stamp.counter.to_be_bytes());
}

/// Fills `buf` up to `len` bytes with a cheap non-constant pattern.
fn fill_to(buf: &mut Vec<u8>, len: usize, seed: u32) {
    let mut x = seed as u8;
    while buf.len() < len {
        x = x.wrapping_mul(37).wrapping_add(11);
        buf.push(x);
    }
}

/// Reads the stamp of a synthetic payload; None for foreign payloads.
pub fn read_stamp(format: PayloadFormat, payload: &[u8]) -> Option<Stamp> {
    let at = match format {
        PayloadFormat::Opus => 1,
        PayloadFormat::Vp8 => vp8_headers_len(payload)?,
    };
    let s = payload.get(at..at + STAMP_LEN)?;
    if s[..4] != STAMP_MAGIC {
        return None;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&s[4..12]);
    let mut c = [0u8; 4];
    c.copy_from_slice(&s[12..16]);
    Some(Stamp {
        sent_unix_micros: u64::from_be_bytes(t),
        counter: u32::from_be_bytes(c),
    })
}

/// Length of the VP8 payload descriptor, plus the frame header when the
/// packet starts a frame (S=1, PID=0).
fn vp8_headers_len(p: &[u8]) -> Option<usize> {
    let b0 = *p.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(1)?;
        i = 2;
        if x & 0x80 != 0 {
            i += if *p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    if b0 & 0x10 != 0 && b0 & 0x07 == 0 {
        let keyframe = *p.get(i)? & 0x01 == 0;
        i += if keyframe { 10 } else { 3 };
    }
    Some(i)
}

/// RTP fields of one generated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Extended sequence number (starts at 0; the low 16 bits go on the wire).
    pub seq: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit (last packet of a video frame).
    pub marker: bool,
    /// Simulcast layer index (0 = `q`), 0 for audio.
    pub layer: usize,
    /// Whether the packet belongs to a keyframe.
    pub keyframe: bool,
}

/// Opus-like audio: one packet per 20 ms, 60 to 120 bytes.
#[derive(Debug, Clone)]
pub struct AudioGenerator {
    seq: u64,
    timestamp: u32,
    counter: u32,
}

impl Default for AudioGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioGenerator {
    /// A generator at sequence 0 and RTP timestamp 0.
    pub fn new() -> Self {
        Self {
            seq: 0,
            timestamp: 0,
            counter: 0,
        }
    }

    /// Writes the next packet's payload into `buf` (cleared first), sent at
    /// `sent_unix_micros`, and returns its RTP fields.
    pub fn next_packet(&mut self, sent_unix_micros: u64, buf: &mut Vec<u8>) -> PacketMeta {
        buf.clear();
        buf.push(OPUS_TOC);
        push_stamp(
            buf,
            Stamp {
                sent_unix_micros,
                counter: self.counter,
            },
        );
        // Sizes like a 32-64 kbps Opus stream: 60..=120 bytes.
        let len = 60 + (self.counter.wrapping_mul(2_654_435_761) >> 26) as usize;
        fill_to(buf, len.min(120), self.counter);
        let meta = PacketMeta {
            seq: self.seq,
            timestamp: self.timestamp,
            marker: self.counter == 0,
            layer: 0,
            keyframe: true,
        };
        self.seq += 1;
        self.counter = self.counter.wrapping_add(1);
        self.timestamp = self
            .timestamp
            .wrapping_add(AUDIO_CLOCK_RATE / 1000 * AUDIO_PACKET_INTERVAL.as_millis() as u32);
        meta
    }
}

/// One simulcast layer of synthetic video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoLayer {
    /// RTP stream id (`q`, `h`, `f`).
    pub rid: &'static str,
    /// Frame width, pixels.
    pub width: u16,
    /// Frame height, pixels.
    pub height: u16,
    /// Target bitrate of delta frames, bits per second.
    pub bitrate_bps: u32,
}

/// LiveKit's usual three layers: 180p, 360p, 720p.
pub const SIMULCAST_LAYERS: [VideoLayer; 3] = [
    VideoLayer {
        rid: "q",
        width: 320,
        height: 180,
        bitrate_bps: 150_000,
    },
    VideoLayer {
        rid: "h",
        width: 640,
        height: 360,
        bitrate_bps: 500_000,
    },
    VideoLayer {
        rid: "f",
        width: 1280,
        height: 720,
        bitrate_bps: 1_500_000,
    },
];

#[derive(Debug, Clone)]
struct LayerState {
    spec: VideoLayer,
    seq: u64,
    picture_id: u16,
    counter: u32,
    frames_since_key: u32,
    force_key: bool,
}

/// VP8 simulcast video: every layer produces a frame per tick, split into
/// packets of at most [`MAX_VIDEO_PAYLOAD`] bytes; keyframes (3x a delta
/// frame) every `keyframe_interval` frames and on request.
#[derive(Debug, Clone)]
pub struct VideoGenerator {
    layers: Vec<LayerState>,
    fps: u32,
    keyframe_interval: u32,
    timestamp: u32,
}

impl VideoGenerator {
    /// A generator for `layers` at `fps` frames per second, a keyframe every
    /// `keyframe_interval` frames (each layer starts with one).
    pub fn new(layers: &[VideoLayer], fps: u32, keyframe_interval: u32) -> Self {
        Self {
            layers: layers
                .iter()
                .map(|&spec| LayerState {
                    spec,
                    seq: 0,
                    picture_id: 0,
                    counter: 0,
                    frames_since_key: 0,
                    force_key: true,
                })
                .collect(),
            fps: fps.max(1),
            keyframe_interval: keyframe_interval.max(1),
            timestamp: 0,
        }
    }

    /// Interval between frames.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.fps
    }

    /// The layers, low to high.
    pub fn layers(&self) -> impl Iterator<Item = &VideoLayer> {
        self.layers.iter().map(|l| &l.spec)
    }

    /// Makes the next frame of `layer` (every layer when None) a keyframe.
    pub fn request_keyframe(&mut self, layer: Option<usize>) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            if layer.is_none_or(|want| want == i) {
                l.force_key = true;
            }
        }
    }

    /// Generates one frame on every layer, sent at `sent_unix_micros`: each
    /// packet is written into `buf` and passed to `emit`.
    pub fn next_frame(
        &mut self,
        sent_unix_micros: u64,
        buf: &mut Vec<u8>,
        mut emit: impl FnMut(&PacketMeta, &[u8]),
    ) {
        let timestamp = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(VIDEO_CLOCK_RATE / self.fps);
        for (index, l) in self.layers.iter_mut().enumerate() {
            let keyframe = l.force_key || l.frames_since_key + 1 >= self.keyframe_interval;
            l.force_key = false;
            l.frames_since_key = if keyframe { 0 } else { l.frames_since_key + 1 };
            let delta_bytes = (l.spec.bitrate_bps / 8 / self.fps) as usize;
            let frame_bytes = if keyframe {
                delta_bytes * 3
            } else {
                delta_bytes
            };
            let per_packet = MAX_VIDEO_PAYLOAD - VP8_DESCRIPTOR_LEN;
            let packets = frame_bytes.div_ceil(per_packet).max(1);
            let body = frame_bytes.div_ceil(packets);
            for n in 0..packets {
                buf.clear();
                let start = n == 0;
                buf.push(0x80 | if start { 0x10 } else { 0 });
                buf.push(0x80);
                buf.push(0x80 | (l.picture_id >> 8) as u8);
                buf.push(l.picture_id as u8);
                if start {
                    // Frame tag: P bit (0 = key), version 0, show_frame,
                    // first partition size.
                    let size = (body as u32).min(0x7ffff);
                    let tag = u32::from(!keyframe) | 0x10 | (size << 5);
                    buf.extend_from_slice(&tag.to_le_bytes()[..3]);
                    if keyframe {
                        buf.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                        buf.extend_from_slice(&l.spec.width.to_le_bytes());
                        buf.extend_from_slice(&l.spec.height.to_le_bytes());
                    }
                }
                push_stamp(
                    buf,
                    Stamp {
                        sent_unix_micros,
                        counter: l.counter,
                    },
                );
                fill_to(
                    buf,
                    (VP8_DESCRIPTOR_LEN + body).min(MAX_VIDEO_PAYLOAD),
                    l.counter,
                );
                let meta = PacketMeta {
                    seq: l.seq,
                    timestamp,
                    marker: n + 1 == packets,
                    layer: index,
                    keyframe,
                };
                l.seq += 1;
                l.counter = l.counter.wrapping_add(1);
                emit(&meta, buf);
            }
            l.picture_id = (l.picture_id + 1) & 0x7fff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's keyframe test (RFC 7741 descriptor, then the P bit).
    fn server_says_key(p: &[u8]) -> bool {
        let start = p[0] & 0x10 != 0 && p[0] & 0x07 == 0;
        start && vp8_headers_len(p).is_some() && p[VP8_DESCRIPTOR_LEN] & 0x01 == 0
    }

    #[test]
    fn audio_packets_are_opus_sized_and_stamped() {
        let mut g = AudioGenerator::new();
        let mut buf = Vec::new();
        for i in 0..100u32 {
            let m = g.next_packet(1_000 + i as u64, &mut buf);
            assert!((60..=120).contains(&buf.len()), "{}", buf.len());
            assert_eq!(m.seq, i as u64);
            assert_eq!(m.timestamp, i * 960);
            assert_eq!(buf[0], OPUS_TOC);
            let s = read_stamp(PayloadFormat::Opus, &buf).unwrap();
            assert_eq!(s.counter, i);
            assert_eq!(s.sent_unix_micros, 1_000 + i as u64);
        }
    }

    #[test]
    fn video_frames_split_stamp_and_key() {
        let mut g = VideoGenerator::new(&SIMULCAST_LAYERS, 30, 90);
        let mut buf = Vec::new();
        let mut per_layer = [0usize; 3];
        let mut bytes = [0usize; 3];
        for frame in 0..90 {
            let mut seen = Vec::new();
            g.next_frame(42, &mut buf, |m, p| {
                assert!(p.len() <= MAX_VIDEO_PAYLOAD);
                let s = read_stamp(PayloadFormat::Vp8, p).unwrap();
                assert_eq!(s.sent_unix_micros, 42);
                let first = p[0] & 0x10 != 0;
                if first {
                    assert_eq!(server_says_key(p), m.keyframe);
                    assert_eq!(m.keyframe, frame == 0, "frame {frame}");
                }
                per_layer[m.layer] += 1;
                bytes[m.layer] += p.len();
                seen.push((m.layer, first, m.marker));
            });
            // Each layer: first packet starts the frame, last one is marked.
            for layer in 0..3 {
                let mine: Vec<_> = seen.iter().filter(|s| s.0 == layer).collect();
                assert!(mine[0].1 && mine.last().unwrap().2);
            }
        }
        // ~3 s at 30 fps: bitrates near the targets (one keyframe).
        let kbps: Vec<usize> = bytes.iter().map(|b| b * 8 / 3 / 1000).collect();
        assert!((150..230).contains(&kbps[0]), "{kbps:?}");
        assert!((500..700).contains(&kbps[1]), "{kbps:?}");
        assert!((1500..2000).contains(&kbps[2]), "{kbps:?}");
        assert!(per_layer[2] > per_layer[1] && per_layer[1] > per_layer[0]);
    }

    #[test]
    fn keyframe_on_request_and_interval() {
        let mut g = VideoGenerator::new(&SIMULCAST_LAYERS[..1], 30, 4);
        let mut buf = Vec::new();
        let mut keys = Vec::new();
        for i in 0..10 {
            if i == 6 {
                g.request_keyframe(Some(0));
            }
            g.next_frame(0, &mut buf, |m, _| {
                if m.marker {
                    keys.push(m.keyframe);
                }
            });
        }
        let expect = [
            true, false, false, false, true, false, true, false, false, false,
        ];
        assert_eq!(keys, expect);
    }

    #[test]
    fn foreign_payloads_have_no_stamp() {
        assert_eq!(read_stamp(PayloadFormat::Opus, &[0x78, 1, 2, 3]), None);
        assert_eq!(read_stamp(PayloadFormat::Vp8, &[]), None);
        assert_eq!(read_stamp(PayloadFormat::Vp8, &[0x90, 0x80]), None);
    }

    #[test]
    fn unix_clock_is_monotonic_and_plausible() {
        let now = Instant::now();
        let a = unix_micros_at(now);
        let b = unix_micros_at(now + Duration::from_millis(5));
        assert!((b - a).abs_diff(5_000) <= 1, "{}", b - a);
        assert!(a > 1_600_000_000_000_000);
    }
}
