//! VP8 payload descriptor (RFC 7741 §4.2) parsing, and the munger that keeps
//! one downtrack's PictureID, TL0PICIDX and KEYIDX continuous across
//! simulcast layer switches.
//!
//! Each simulcast encoding numbers its pictures on its own, so a subscriber
//! switched from one layer to another would see these counters jump (often
//! backwards), and a receiver that tracks frame references by PictureID
//! (libwebrtc's VP8 reference finder) can treat the new layer's keyframe as
//! old and drop it. At a switch, [`Vp8Munger::switch`] picks offsets so that
//! the new layer's first picture follows the last one sent; every forwarded
//! packet then has its fields shifted by them ([`Vp8Munger::munge`]). The
//! field widths never change: a 7-bit PictureID stays 7 bits, and wraps.
//!
//! Pure code: no IO, no panics on malformed input (a descriptor that does
//! not parse is forwarded unchanged and counted).

use std::sync::Arc;

/// Modulus of a 15-bit PictureID (M = 1).
const PICTURE_ID_15: u16 = 1 << 15;
/// Mask of a 7-bit PictureID (M = 0).
const MASK_7: u16 = 0x7F;
/// Mask of a 15-bit PictureID.
const MASK_15: u16 = 0x7FFF;
/// Mask of the 5-bit KEYIDX.
const MASK_KEYIDX: u8 = 0x1F;

/// A PictureID as sent: its value and its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    /// The value, below 2^7 when `wide` is false, below 2^15 otherwise.
    pub value: u16,
    /// M bit: the field is 15 bits (two bytes) rather than 7 (one byte).
    pub wide: bool,
}

impl PictureId {
    fn mask(self) -> u16 {
        if self.wide {
            MASK_15
        } else {
            MASK_7
        }
    }
}

/// The fields of one VP8 payload descriptor (RFC 7741 §4.2), with where
/// they sit in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// N bit: a non-reference frame (may be discarded without affecting others).
    pub non_reference: bool,
    /// S bit: the packet starts a VP8 partition.
    pub start: bool,
    /// PID: partition index, 0..=7.
    pub partition: u8,
    /// PictureID, present when X and I are set.
    pub picture_id: Option<PictureId>,
    /// TL0PICIDX (8 bits, wraps), present when X and L are set.
    pub tl0picidx: Option<u8>,
    /// TID (0..=3) and the Y (layer sync) bit, present when X and T are set.
    pub tid: Option<(u8, bool)>,
    /// KEYIDX (5 bits, wraps), present when X and K are set.
    pub keyidx: Option<u8>,
    /// Length of the descriptor in bytes (1..=6); the VP8 payload follows.
    pub len: usize,
    /// Byte offset of the PictureID field (1 or 2 bytes).
    picture_id_at: usize,
    /// Byte offset of TL0PICIDX.
    tl0picidx_at: usize,
    /// Byte offset of the TID/Y/KEYIDX byte.
    tid_key_at: usize,
}

impl Descriptor {
    /// Parses the descriptor at the start of a VP8 RTP payload. None if the
    /// payload is shorter than the descriptor its own bits announce.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let mut d = Self {
            non_reference: b0 & 0x20 != 0,
            start: b0 & 0x10 != 0,
            partition: b0 & 0x07,
            picture_id: None,
            tl0picidx: None,
            tid: None,
            keyidx: None,
            len: 1,
            picture_id_at: 0,
            tl0picidx_at: 0,
            tid_key_at: 0,
        };
        if b0 & 0x80 == 0 {
            return Some(d);
        }
        let x = *payload.get(1)?;
        let mut i = 2;
        if x & 0x80 != 0 {
            let hi = *payload.get(i)?;
            d.picture_id_at = i;
            if hi & 0x80 != 0 {
                let lo = *payload.get(i + 1)?;
                d.picture_id = Some(PictureId {
                    value: u16::from_be_bytes([hi & 0x7F, lo]),
                    wide: true,
                });
                i += 2;
            } else {
                d.picture_id = Some(PictureId {
                    value: u16::from(hi),
                    wide: false,
                });
                i += 1;
            }
        }
        if x & 0x40 != 0 {
            d.tl0picidx = Some(*payload.get(i)?);
            d.tl0picidx_at = i;
            i += 1;
        }
        let (t, k) = (x & 0x20 != 0, x & 0x10 != 0);
        if t || k {
            let b = *payload.get(i)?;
            d.tid_key_at = i;
            if t {
                d.tid = Some((b >> 6, b & 0x20 != 0));
            }
            if k {
                d.keyidx = Some(b & MASK_KEYIDX);
            }
            i += 1;
        }
        d.len = i;
        Some(d)
    }
}

/// New values for a packet's descriptor fields, in the widths the packet
/// already uses; fields that are None, or absent from the packet, keep
/// their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Rewrite {
    /// Outgoing PictureID (7 or 15 bits, as in the packet).
    pub picture_id: Option<u16>,
    /// Outgoing TL0PICIDX.
    pub tl0picidx: Option<u8>,
    /// Outgoing KEYIDX (5 bits).
    pub keyidx: Option<u8>,
}

impl Vp8Rewrite {
    /// A copy of `payload` with the rewritten fields; the descriptor keeps
    /// its length, so the VP8 data after it is untouched. A payload that
    /// does not parse is copied unchanged.
    pub fn apply(&self, payload: &[u8]) -> Arc<[u8]> {
        let mut out = payload.to_vec();
        if let Some(d) = Descriptor::parse(payload) {
            self.write(&d, &mut out);
        }
        out.into()
    }

    /// The same rewrite as a str0m patch that str0m applies while it copies
    /// the payload into the outgoing packet, so the shared payload is not
    /// copied once more per subscriber. None when the payload does not
    /// parse or str0m refuses a field (then use [`Vp8Rewrite::apply`]).
    pub fn to_patch(&self, payload: &[u8]) -> Option<str0m::rtp::Vp8Patch> {
        let ours = Descriptor::parse(payload)?;
        let mut b = str0m::rtp::Vp8Descriptor::parse(payload).ok()?.patch();
        if let (Some(v), Some(pid)) = (self.picture_id, ours.picture_id) {
            b = b.picture_id(if pid.wide { v & MASK_15 } else { v & MASK_7 });
        }
        if let (Some(v), Some(_)) = (self.tl0picidx, ours.tl0picidx) {
            b = b.tl0_pic_idx(v);
        }
        if let (Some(v), Some(_)) = (self.keyidx, ours.keyidx) {
            b = b.key_idx(v & MASK_KEYIDX);
        }
        b.build().ok()
    }

    /// Writes the fields into `buf`, whose descriptor is `d`.
    fn write(&self, d: &Descriptor, buf: &mut [u8]) {
        if let (Some(v), Some(pid)) = (self.picture_id, d.picture_id) {
            if pid.wide {
                let [hi, lo] = (v & MASK_15).to_be_bytes();
                if let Some(b) = buf.get_mut(d.picture_id_at) {
                    *b = 0x80 | hi;
                }
                if let Some(b) = buf.get_mut(d.picture_id_at + 1) {
                    *b = lo;
                }
            } else if let Some(b) = buf.get_mut(d.picture_id_at) {
                *b = (v & MASK_7) as u8;
            }
        }
        if let (Some(v), Some(_)) = (self.tl0picidx, d.tl0picidx) {
            if let Some(b) = buf.get_mut(d.tl0picidx_at) {
                *b = v;
            }
        }
        if let (Some(v), Some(_)) = (self.keyidx, d.keyidx) {
            if let Some(b) = buf.get_mut(d.tid_key_at) {
                *b = (*b & !MASK_KEYIDX) | (v & MASK_KEYIDX);
            }
        }
    }
}

/// Per-downtrack VP8 descriptor munging state: the last values sent and
/// the offsets subtracted from the current layer's values.
#[derive(Debug, Default)]
pub struct Vp8Munger {
    /// Last outgoing PictureID (of the newest packet sent), as a 15-bit value.
    last_picture_id: Option<u16>,
    /// Last outgoing TL0PICIDX.
    last_tl0picidx: Option<u8>,
    /// Last outgoing KEYIDX.
    last_keyidx: Option<u8>,
    /// Subtracted from incoming PictureIDs, modulo 2^15 (then masked to the
    /// packet's width; 2^7 divides 2^15, so a 7-bit field wraps correctly).
    picture_id_offset: u16,
    /// Subtracted from incoming TL0PICIDX, modulo 2^8.
    tl0picidx_offset: u8,
    /// Subtracted from incoming KEYIDX, modulo 2^5.
    keyidx_offset: u8,
    /// Packets whose descriptor did not parse (forwarded unchanged).
    malformed: u64,
}

impl Vp8Munger {
    /// A munger that has sent nothing yet (all offsets zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new layer (or a resumed stream) at `payload`, the first
    /// packet to forward from it (a keyframe's first packet): chooses the
    /// offsets so that its PictureID, TL0PICIDX and KEYIDX each come one
    /// after the last ones sent. Fields never sent before keep their value.
    pub fn switch(&mut self, payload: &[u8]) {
        let Some(d) = Descriptor::parse(payload) else {
            self.malformed += 1;
            self.picture_id_offset = 0;
            self.tl0picidx_offset = 0;
            self.keyidx_offset = 0;
            return;
        };
        self.picture_id_offset = match (d.picture_id, self.last_picture_id) {
            (Some(pid), Some(last)) => {
                let next = last.wrapping_add(1) & MASK_15;
                pid.value.wrapping_add(PICTURE_ID_15).wrapping_sub(next) & MASK_15
            }
            _ => 0,
        };
        self.tl0picidx_offset = match (d.tl0picidx, self.last_tl0picidx) {
            (Some(v), Some(last)) => v.wrapping_sub(last.wrapping_add(1)),
            _ => 0,
        };
        self.keyidx_offset = match (d.keyidx, self.last_keyidx) {
            (Some(v), Some(last)) => v.wrapping_sub(last.wrapping_add(1)) & MASK_KEYIDX,
            _ => 0,
        };
    }

    /// Munges one packet of the current layer. `newest`: whether it is the
    /// newest outgoing packet so far (by sequence number); only then are its
    /// values remembered as the last sent. Returns the rewrite to apply, or
    /// None when the payload goes out unchanged: no field changes (e.g. a
    /// downtrack that never switched), or the descriptor does not parse.
    pub fn munge(&mut self, payload: &[u8], newest: bool) -> Option<Vp8Rewrite> {
        let Some(d) = Descriptor::parse(payload) else {
            self.malformed += 1;
            return None;
        };
        let picture_id = d
            .picture_id
            .map(|p| p.value.wrapping_sub(self.picture_id_offset) & p.mask());
        let tl0picidx = d.tl0picidx.map(|v| v.wrapping_sub(self.tl0picidx_offset));
        let keyidx = d
            .keyidx
            .map(|v| v.wrapping_sub(self.keyidx_offset) & MASK_KEYIDX);
        if newest {
            if picture_id.is_some() {
                self.last_picture_id = picture_id;
            }
            if tl0picidx.is_some() {
                self.last_tl0picidx = tl0picidx;
            }
            if keyidx.is_some() {
                self.last_keyidx = keyidx;
            }
        }
        let changed = picture_id != d.picture_id.map(|p| p.value)
            || tl0picidx != d.tl0picidx
            || keyidx != d.keyidx;
        changed.then_some(Vp8Rewrite {
            picture_id,
            tl0picidx,
            keyidx,
        })
    }

    /// Number of packets whose descriptor was too short to parse.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str0m_patch_for_parsed_descriptors_only() {
        let r = Vp8Rewrite {
            picture_id: Some(0x1234),
            tl0picidx: Some(9),
            keyidx: Some(3),
        };
        // 15-bit and 7-bit PictureIDs both take a patch (the value is
        // masked to the packet's width).
        assert!(r.to_patch(&full(0x0100, true, 1, 0, 1)).is_some());
        assert!(r.to_patch(&full(0x10, false, 1, 0, 1)).is_some());
        // Too short for its own flags: no patch (forward() then copies).
        assert!(r.to_patch(&[0x90, 0xF0]).is_none());
        assert!(r.to_patch(&[]).is_none());
    }

    /// A descriptor with X set and every optional field present.
    fn full(pid: u16, wide: bool, tl0: u8, tid: u8, key: u8) -> Vec<u8> {
        let mut v = vec![0x90, 0xF0];
        if wide {
            v.extend_from_slice(&[0x80 | (pid >> 8) as u8, pid as u8]);
        } else {
            v.push(pid as u8 & 0x7F);
        }
        v.push(tl0);
        v.push((tid << 6) | 0x20 | (key & 0x1F));
        v.extend_from_slice(&[0x9d, 0x01, 0x2a]); // VP8 payload bytes
        v
    }

    /// The (PictureID, TL0PICIDX, KEYIDX) a receiver sees.
    fn seen(m: &mut Vp8Munger, p: &[u8]) -> (u16, u8, u8) {
        let out = match m.munge(p, true) {
            Some(r) => r.apply(p),
            None => Arc::from(p),
        };
        let d = Descriptor::parse(&out).unwrap();
        assert_eq!(d.len, Descriptor::parse(p).unwrap().len);
        assert_eq!(&out[d.len..], &p[d.len..], "VP8 data untouched");
        assert_eq!(d.tid, Descriptor::parse(p).unwrap().tid, "TID/Y kept");
        (
            d.picture_id.unwrap().value,
            d.tl0picidx.unwrap(),
            d.keyidx.unwrap(),
        )
    }

    #[test]
    fn parses_15_bit_picture_id_and_all_fields() {
        let d = Descriptor::parse(&full(0x1234, true, 7, 2, 9)).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x1234,
                wide: true
            })
        );
        assert_eq!(d.tl0picidx, Some(7));
        assert_eq!(d.tid, Some((2, true)));
        assert_eq!(d.keyidx, Some(9));
        assert_eq!(d.len, 6);
        assert!(d.start);
        assert_eq!(d.partition, 0);
    }

    #[test]
    fn parses_7_bit_picture_id_and_minimal_descriptors() {
        let d = Descriptor::parse(&full(100, false, 1, 0, 0)).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 100,
                wide: false
            })
        );
        assert_eq!(d.len, 5);
        // No X: one byte, nothing optional.
        let d = Descriptor::parse(&[0x10, 0x9d]).unwrap();
        assert_eq!((d.len, d.picture_id, d.tl0picidx), (1, None, None));
        // X with only I (what Chrome sends without temporal layers).
        let d = Descriptor::parse(&[0x90, 0x80, 0x81, 0x02, 0x00]).unwrap();
        assert_eq!(d.picture_id.map(|p| p.value), Some(0x102));
        assert_eq!((d.len, d.tl0picidx, d.tid, d.keyidx), (4, None, None, None));
        // K without T: the TID/Y/KEYIDX byte is still present.
        let d = Descriptor::parse(&[0x80, 0x10, 0xC5]).unwrap();
        assert_eq!((d.tid, d.keyidx, d.len), (None, Some(5), 3));
    }

    #[test]
    fn never_switched_needs_no_rewrite() {
        let mut m = Vp8Munger::new();
        m.switch(&full(500, true, 3, 0, 1));
        for i in 0..5 {
            assert_eq!(m.munge(&full(500 + i, true, 3 + i as u8, 0, 1), true), None);
        }
    }

    #[test]
    fn switch_continues_every_counter() {
        let mut m = Vp8Munger::new();
        m.switch(&full(1000, true, 50, 0, 3));
        for i in 0..3 {
            seen(&mut m, &full(1000 + i, true, 50 + i as u8, 0, 3));
        }
        // Last sent: 1002 / 52 / 3. The new layer starts at 20000 / 200 / 30.
        m.switch(&full(20_000, true, 200, 0, 30));
        assert_eq!(seen(&mut m, &full(20_000, true, 200, 0, 30)), (1003, 53, 4));
        assert_eq!(seen(&mut m, &full(20_001, true, 201, 1, 30)), (1004, 54, 4));
        assert_eq!(seen(&mut m, &full(20_002, true, 201, 2, 31)), (1005, 54, 5));
        // And back to a layer with a smaller PictureID.
        m.switch(&full(7, true, 1, 0, 0));
        assert_eq!(seen(&mut m, &full(7, true, 1, 0, 0)), (1006, 55, 6));
    }

    #[test]
    fn wraps_at_field_widths() {
        // 15 bits: last sent 32767, next is 0.
        let mut m = Vp8Munger::new();
        m.switch(&full(32_767, true, 255, 0, 31));
        seen(&mut m, &full(32_767, true, 255, 0, 31));
        m.switch(&full(400, true, 9, 0, 2));
        assert_eq!(seen(&mut m, &full(400, true, 9, 0, 2)), (0, 0, 0));
        assert_eq!(seen(&mut m, &full(401, true, 10, 0, 3)), (1, 1, 1));
        // The source itself wraps after the switch.
        let mut m = Vp8Munger::new();
        m.switch(&full(10, true, 0, 0, 0));
        seen(&mut m, &full(10, true, 0, 0, 0));
        m.switch(&full(32_766, true, 0, 0, 0));
        assert_eq!(seen(&mut m, &full(32_766, true, 0, 0, 0)).0, 11);
        assert_eq!(seen(&mut m, &full(32_767, true, 0, 0, 0)).0, 12);
        assert_eq!(seen(&mut m, &full(0, true, 0, 0, 0)).0, 13);
    }

    #[test]
    fn seven_bit_picture_id_stays_seven_bits_and_wraps() {
        let mut m = Vp8Munger::new();
        m.switch(&full(120, false, 0, 0, 0));
        for i in 120..126 {
            seen(&mut m, &full(i, false, 0, 0, 0));
        }
        m.switch(&full(3, false, 0, 0, 0));
        let got: Vec<u16> = (3..7)
            .map(|i| seen(&mut m, &full(i, false, 0, 0, 0)).0)
            .collect();
        assert_eq!(got, [126, 127, 0, 1]);
        let out = m.munge(&full(7, false, 0, 0, 0), true).unwrap();
        let p = full(7, false, 0, 0, 0);
        let d = Descriptor::parse(&out.apply(&p)).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 2,
                wide: false
            })
        );
    }

    #[test]
    fn late_packets_do_not_move_the_last_values() {
        let mut m = Vp8Munger::new();
        m.switch(&full(100, true, 10, 0, 0));
        seen(&mut m, &full(100, true, 10, 0, 0));
        seen(&mut m, &full(102, true, 11, 0, 0));
        // A retransmitted or reordered older packet, forwarded but not newest.
        assert_eq!(m.munge(&full(101, true, 10, 0, 0), false), None);
        m.switch(&full(9000, true, 90, 0, 0));
        assert_eq!(seen(&mut m, &full(9000, true, 90, 0, 0)), (103, 12, 1));
    }

    #[test]
    fn fields_absent_before_the_switch_keep_their_values() {
        let mut m = Vp8Munger::new();
        // The first layer sends no descriptor extension at all.
        m.switch(&[0x10, 0x00]);
        assert_eq!(m.munge(&[0x10, 0x00], true), None);
        m.switch(&full(700, true, 4, 0, 1));
        assert_eq!(m.munge(&full(700, true, 4, 0, 1), true), None);
    }

    #[test]
    fn malformed_descriptors_are_counted_and_left_alone() {
        let short: [&[u8]; 6] = [
            &[],
            &[0x80],
            &[0x80, 0x80],
            &[0x80, 0x80, 0x81],
            &[0x80, 0x40],
            &[0x80, 0x20],
        ];
        let mut m = Vp8Munger::new();
        m.switch(&full(10, true, 0, 0, 0));
        seen(&mut m, &full(10, true, 0, 0, 0));
        m.switch(&full(500, true, 0, 0, 0));
        for p in short {
            assert_eq!(Descriptor::parse(p), None, "{p:?}");
            assert_eq!(m.munge(p, true), None);
            // Applying a rewrite to it copies it unchanged.
            let r = Vp8Rewrite {
                picture_id: Some(1),
                tl0picidx: Some(1),
                keyidx: Some(1),
            };
            assert_eq!(&*r.apply(p), p);
        }
        assert_eq!(m.malformed(), short.len() as u64);
        m.switch(&[0x80]);
        assert_eq!(m.malformed(), short.len() as u64 + 1);
        // Offsets reset: a parseable packet is forwarded as is.
        assert_eq!(m.munge(&full(501, true, 0, 0, 0), true), None);
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panicking() {
        let mut m = Vp8Munger::new();
        m.switch(&full(3, true, 3, 0, 3));
        seen(&mut m, &full(3, true, 3, 0, 3));
        m.switch(&full(9, true, 9, 0, 9));
        let mut x: u32 = 0x1234_5678;
        for len in 0..8 {
            for _ in 0..500 {
                let p: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                if let Some(r) = m.munge(&p, false) {
                    assert_eq!(r.apply(&p).len(), p.len());
                }
            }
        }
    }
}
