//! Rewriting the sender reports in str0m's outgoing SRTCP, for streams
//! whose RTP we send ourselves (`super::srtp_tx`).
//!
//! str0m keeps sending a sender report (RFC 3550 §6.4.1) for such a
//! stream, with the packet and octet counts and the RTP timestamp of what
//! *it* sent: zeros. A receiver maps RTP time to wallclock from those
//! reports (lip sync), so the server corrects them in flight: it decrypts
//! each SRTCP compound str0m sends (RFC 3711 §3.4; RFC 7714 §9, §17),
//! patches the reports of its own streams, and protects the compound again
//! under str0m's own SRTCP index. Only the rewritten packet is sent, so no
//! (key, index) pair protects two different packets. A second stream of
//! SRTCP on the same SSRC, with its own index, would collide with str0m's
//! at the receiver (libsrtp keeps replay state per SSRC): str0m numbers
//! all its compounds with one index and may head any of them with this
//! SSRC.

use aws_lc_rs::cipher::EncryptionContext;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::srtp_tx::{cm_iv, CmHmac, SrtpTx, Transform, GCM_TAG_LEN, HMAC_TAG_LEN};

/// RTCP packet type of a sender report (RFC 3550 §12.1).
const RTCP_SR: u8 = 200;
/// The cleartext head of an SRTCP packet: the first RTCP header and SSRC.
const HEAD: usize = 8;
/// The E flag and 31-bit SRTCP index trailer.
const INDEX_LEN: usize = 4;

/// What a sender report says of a stream (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderCounts {
    /// RTP timestamp matching the report's NTP time (media clock units).
    pub rtp_time: u32,
    /// Packets sent, since the stream started (wraps).
    pub packets: u32,
    /// Payload octets sent (wraps).
    pub octets: u32,
}

/// Sets, in the plaintext RTCP compound `compound`, the RTP time and
/// counts of every sender report whose SSRC `counts` knows. Returns
/// whether anything changed. A malformed compound is left as far as it
/// parsed.
pub fn patch_sender_reports(
    compound: &mut [u8],
    mut counts: impl FnMut(u32) -> Option<SenderCounts>,
) -> bool {
    let mut changed = false;
    let mut at = 0;
    while at + 4 <= compound.len() {
        let len = (usize::from(u16::from_be_bytes([compound[at + 2], compound[at + 3]])) + 1) * 4;
        if compound[at] >> 6 != 2 || at + len > compound.len() {
            break;
        }
        if compound[at + 1] == RTCP_SR && len >= 28 {
            let ssrc = u32::from_be_bytes([
                compound[at + 4],
                compound[at + 5],
                compound[at + 6],
                compound[at + 7],
            ]);
            if let Some(c) = counts(ssrc) {
                compound[at + 16..at + 20].copy_from_slice(&c.rtp_time.to_be_bytes());
                compound[at + 20..at + 24].copy_from_slice(&c.packets.to_be_bytes());
                compound[at + 24..at + 28].copy_from_slice(&c.octets.to_be_bytes());
                changed = true;
            }
        }
        at += len;
    }
    changed
}

impl SrtpTx {
    /// Decrypts the SRTCP packet `packet` (built by this context's keys:
    /// an SRTCP context, [`SrtpTx::from_keying_rtcp`]), lets `patch` edit
    /// the plaintext compound (its first [`HEAD`] bytes must stay as
    /// they are), and protects it again under the same index. Returns
    /// false, leaving `packet` untouched, when it is not an encrypted SRTCP
    /// packet of this context or `patch` changed nothing.
    pub fn rewrite_rtcp(&self, packet: &mut [u8], patch: impl FnOnce(&mut [u8]) -> bool) -> bool {
        let n = packet.len();
        let tag_len = self.overhead();
        if n < HEAD + INDEX_LEN + tag_len {
            return false;
        }
        // GCM: head | ciphertext | tag | E+index. AES-CM: head | ciphertext
        // | E+index | tag.
        let (body_end, index_at) = match self.transform {
            Transform::Gcm(_) => (n - INDEX_LEN - GCM_TAG_LEN, n - INDEX_LEN),
            Transform::CmHmac(_) => (n - INDEX_LEN - HMAC_TAG_LEN, n - INDEX_LEN - HMAC_TAG_LEN),
        };
        let mut e_index = [0u8; 4];
        e_index.copy_from_slice(&packet[index_at..index_at + 4]);
        if e_index[0] & 0x80 == 0 {
            return false; // Not encrypted: not str0m's.
        }
        let index = u32::from_be_bytes(e_index) & 0x7fff_ffff;
        let ssrc = [packet[4], packet[5], packet[6], packet[7]];
        match &self.transform {
            Transform::Gcm(key) => {
                let nonce = || {
                    let mut iv = [0u8; 12];
                    iv[2..6].copy_from_slice(&ssrc);
                    iv[8..12].copy_from_slice(&index.to_be_bytes());
                    for (b, s) in iv.iter_mut().zip(&self.salt[..12]) {
                        *b ^= s;
                    }
                    iv
                };
                let mut aad = [0u8; HEAD + INDEX_LEN];
                aad[..HEAD].copy_from_slice(&packet[..HEAD]);
                aad[HEAD..].copy_from_slice(&e_index);
                let mut plain = packet[..n - INDEX_LEN].to_vec();
                let Some(body_len) = key.open_in_place(&nonce(), &aad, &mut plain[HEAD..]) else {
                    return false;
                };
                plain.truncate(HEAD + body_len);
                if !patch(&mut plain) || plain[..HEAD] != packet[..HEAD] {
                    return false;
                }
                let Some(tag) = key.seal_in_place(&nonce(), &aad, &mut plain[HEAD..]) else {
                    return false;
                };
                packet[HEAD..body_end].copy_from_slice(&plain[HEAD..]);
                packet[body_end..index_at].copy_from_slice(&tag);
                true
            }
            Transform::CmHmac(cm) => {
                let CmHmac { ctr, auth } = &**cm;
                let iv = cm_iv(&self.salt, ssrc, u64::from(index));
                // Check the tag first: never rewrite what this context did
                // not protect.
                let mut mac = hmac::Context::with_key(auth);
                mac.update(&packet[..index_at + INDEX_LEN]);
                if mac.sign().as_ref()[..HMAC_TAG_LEN] != packet[index_at + INDEX_LEN..] {
                    return false;
                }
                let mut plain = packet[..body_end].to_vec();
                let keystream = || EncryptionContext::Iv128(FixedLength::from(iv));
                if ctr
                    .less_safe_encrypt(&mut plain[HEAD..], keystream())
                    .is_err()
                {
                    return false;
                }
                if !patch(&mut plain) || plain[..HEAD] != packet[..HEAD] {
                    return false;
                }
                if ctr
                    .less_safe_encrypt(&mut plain[HEAD..], keystream())
                    .is_err()
                {
                    return false;
                }
                packet[..body_end].copy_from_slice(&plain);
                let mut mac = hmac::Context::with_key(auth);
                mac.update(&packet[..index_at + INDEX_LEN]);
                let tag = mac.sign();
                packet[index_at + INDEX_LEN..].copy_from_slice(&tag.as_ref()[..HMAC_TAG_LEN]);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SR (no report blocks) for `ssrc`, then an SDES-sized filler.
    fn compound(ssrc: u32) -> Vec<u8> {
        let mut c = vec![0x80, RTCP_SR, 0, 6];
        c.extend_from_slice(&ssrc.to_be_bytes());
        c.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // NTP
        c.extend_from_slice(&[0; 12]); // RTP time, packets, octets
        c.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 9]);
        c
    }

    #[test]
    fn patches_only_known_sender_reports() {
        let mut c = compound(7);
        let mut other = c.clone();
        let counts = SenderCounts {
            rtp_time: 0x0102_0304,
            packets: 50,
            octets: 5000,
        };
        assert!(patch_sender_reports(&mut c, |s| (s == 7).then_some(counts)));
        assert_eq!(&c[16..20], &[1, 2, 3, 4]);
        assert_eq!(u32::from_be_bytes([c[20], c[21], c[22], c[23]]), 50);
        assert_eq!(u32::from_be_bytes([c[24], c[25], c[26], c[27]]), 5000);
        assert_eq!(&c[8..16], &[1, 2, 3, 4, 5, 6, 7, 8], "NTP time kept");
        assert!(!patch_sender_reports(&mut other, |s| (s == 8).then_some(counts)));
        // Truncated: no panic, nothing changed.
        let mut short = compound(7)[..20].to_vec();
        assert!(!patch_sender_reports(&mut short, |_| Some(counts)));
    }
}

#[cfg(test)]
mod profile_tests {
    use str0m::crypto::dtls::SrtpProfile;
    use str0m::crypto::{AeadAes128Gcm, Aes128CmSha1_80};

    use super::super::srtp_tx::{derive, lengths};
    use super::*;

    /// SRTCP session keys (labels 3-5) of a master key and salt.
    fn session(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> (Vec<u8>, Vec<u8>, [u8; 20]) {
        let (key_len, salt_len) = lengths(profile).expect("profile");
        let mut k = vec![0u8; key_len];
        derive(key, salt, 3, &mut k).expect("k");
        let mut a = [0u8; 20];
        derive(key, salt, 4, &mut a).expect("a");
        let mut s = vec![0u8; salt_len];
        derive(key, salt, 5, &mut s).expect("s");
        (k, s, a)
    }

    /// An SRTCP packet as str0m protects one (its provider's ciphers and
    /// IV/HMAC helpers; RFC 3711 §3.4, RFC 7714 §9, §17).
    fn protect(profile: SrtpProfile, key: &[u8], salt: &[u8], plain: &[u8], index: u32) -> Vec<u8> {
        let provider = str0m::crypto::from_feature_flags();
        let (k, s, a) = session(profile, key, salt);
        let ssrc = u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]);
        let e_index = (0x8000_0000 | index).to_be_bytes();
        let mut out = plain[..HEAD].to_vec();
        let body = &plain[HEAD..];
        if profile == SrtpProfile::AES128_CM_SHA1_80 {
            let iv = Aes128CmSha1_80::rtp_iv(s.try_into().expect("salt"), ssrc, u64::from(index));
            let mut c = provider
                .srtp_provider
                .aes_128_cm_sha1_80()
                .create_cipher(k.try_into().expect("key"), true);
            let mut enc = vec![0u8; body.len() + 16];
            c.encrypt(&iv, body, &mut enc).expect("encrypt");
            out.extend_from_slice(&enc[..body.len()]);
            out.extend_from_slice(&e_index);
            let end = out.len();
            out.resize(end + HMAC_TAG_LEN, 0);
            let hmac = |k: &[u8], p: &[&[u8]]| provider.sha1_hmac_provider.sha1_hmac(k, p);
            Aes128CmSha1_80::rtcp_hmac(hmac, &a, &mut out, end);
        } else {
            let iv = AeadAes128Gcm::rtcp_iv(s.try_into().expect("salt"), ssrc, index);
            let mut c = provider
                .srtp_provider
                .aead_aes_128_gcm()
                .create_cipher(k.try_into().expect("key"), true);
            let mut aad = plain[..HEAD].to_vec();
            aad.extend_from_slice(&e_index);
            let mut enc = vec![0u8; body.len() + 16];
            c.encrypt(&iv, &aad, body, &mut enc).expect("encrypt");
            out.extend_from_slice(&enc);
            out.extend_from_slice(&e_index);
        }
        out
    }

    /// For the profiles a str0m pair does not negotiate between
    /// themselves: a rewritten packet is exactly what str0m's primitives
    /// make of the patched compound under the same index, and a packet
    /// under another key is left alone.
    #[test]
    fn rewrites_aes_cm_and_aes_128_gcm_as_str0m_would_protect() {
        let counts = SenderCounts {
            rtp_time: 9,
            packets: 8,
            octets: 7,
        };
        let mut plain = vec![0x80, RTCP_SR, 0, 6, 0, 0, 0, 42];
        plain.extend_from_slice(&[1; 20]);
        plain.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 9]);
        let mut patched = plain.clone();
        assert!(patch_sender_reports(&mut patched, |s| (s == 42).then_some(counts)));
        for profile in [
            SrtpProfile::AES128_CM_SHA1_80,
            SrtpProfile::AEAD_AES_128_GCM,
        ] {
            let key = [5u8; 16];
            let salt: Vec<u8> = (0..lengths(profile).expect("p").1 as u8).collect();
            let ctx = SrtpTx::derived_for_tests(profile, &key, &salt);
            let mut packet = protect(profile, &key, &salt, &plain, 77);
            assert!(ctx.rewrite_rtcp(&mut packet, |c| {
                patch_sender_reports(c, |s| (s == 42).then_some(counts))
            }));
            assert_eq!(
                packet,
                protect(profile, &key, &salt, &patched, 77),
                "{profile:?}"
            );

            let mut foreign = protect(profile, &[6u8; 16], &salt, &plain, 77);
            let before = foreign.clone();
            assert!(!ctx.rewrite_rtcp(&mut foreign, |c| {
                patch_sender_reports(c, |_| Some(counts))
            }));
            assert_eq!(foreign, before, "{profile:?}: untouched");
        }
    }
}

#[cfg(test)]
mod pair_tests {
    use std::time::Duration;

    use super::super::test_pair::Pair;
    use super::*;

    /// str0m's own sender reports for a stream it never sent on, rewritten
    /// with our counts, reach the client's str0m with those counts.
    #[test]
    fn rewritten_sender_reports_reach_the_peer() {
        let mut pair = Pair::connected();
        let keying = pair.server.keys.keying().expect("keys captured");
        let rtcp = SrtpTx::from_keying_rtcp(&keying).expect("context");
        let ssrc = *pair.ssrc;
        let counts = SenderCounts {
            rtp_time: 480_000,
            packets: 500,
            octets: 50_000,
        };
        let mut rewritten = 0;
        for _ in 0..30 {
            pair.advance(Duration::from_millis(500), |d| {
                // SRTCP: RTCP packet types 200-206 in the second byte.
                if (200..=206).contains(&d[1])
                    && rtcp.rewrite_rtcp(d, |c| {
                        patch_sender_reports(c, |s| (s == ssrc).then_some(counts))
                    })
                {
                    rewritten += 1;
                }
            });
        }
        assert!(rewritten >= 2, "str0m sent sender reports: {rewritten}");
        let ours: Vec<_> = pair
            .sender_reports
            .iter()
            .filter(|s| *s.ssrc == ssrc)
            .collect();
        assert_eq!(ours.len(), rewritten, "every rewritten report accepted");
        for s in ours {
            assert_eq!(s.sender_packet_count, 500);
            assert_eq!(s.sender_octet_count, 50_000);
            assert_eq!(s.rtp_time.numer(), 480_000);
        }
    }
}
