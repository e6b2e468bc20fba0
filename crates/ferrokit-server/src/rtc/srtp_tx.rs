//! SRTP protection of RTP packets the server sends itself, from a
//! connection's DTLS-SRTP keying material (`super::dtls_keys`).
//!
//! - Key derivation: RFC 3711 §4.3 with a key derivation rate of 0, the
//!   AES-CM PRF (AES-256 for AEAD_AES_256_GCM, RFC 7714 §11): the session
//!   key, salt and (for AES-CM) authentication key are the AES-CTR
//!   keystream under the master key, from the IV `master_salt ^ label`
//!   (label in byte 7), counter in bytes 14..16.
//! - AEAD_AES_128_GCM / AEAD_AES_256_GCM (RFC 7714 §8): IV = salt ^
//!   (0 0 | SSRC | ROC | SEQ), AAD = the whole RTP header, 16 byte tag
//!   appended.
//! - AES128_CM_HMAC_SHA1_80 (RFC 3711 §4.1.1, §4.2): IV = salt·2^16 ^
//!   SSRC·2^64 ^ index·2^16; HMAC-SHA1 over the packet and the ROC,
//!   truncated to 10 bytes and appended.
//!
//! The SRTP index is the 64-bit extended sequence number (ROC = index >>
//! 16), the same one str0m protects with when given it in `RtpWrite`, so
//! packets of one SSRC may go either way without reusing an index.
//! Keys are expanded once; a packet is protected in place. AES-GCM goes
//! through `super::gcm` (aws-lc's EVP_AEAD API, so the egress worker can
//! prefetch the key context), AES-CM and HMAC through aws-lc-rs.

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use str0m::crypto::dtls::SrtpProfile;

use super::dtls_keys::SrtpKeying;
use super::gcm::GcmKey;

/// RFC 3711 §4.3.1 labels for SRTP; SRTCP's are these + 3.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABELS_RTCP: u8 = 3;
/// Bytes appended by each transform.
pub(super) const GCM_TAG_LEN: usize = 16;
pub(super) const HMAC_TAG_LEN: usize = 10;

/// Why a sending context could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrtpTxError {
    /// A profile this module does not implement.
    UnknownProfile,
    /// The keying material's length does not fit the profile.
    BadKeyingMaterial(usize),
    /// The crypto library refused a key.
    Crypto,
}

impl std::fmt::Display for SrtpTxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownProfile => write!(f, "unknown SRTP profile"),
            Self::BadKeyingMaterial(n) => write!(f, "keying material of {n} bytes"),
            Self::Crypto => write!(f, "the crypto library refused a key"),
        }
    }
}

impl std::error::Error for SrtpTxError {}

pub(super) enum Transform {
    Gcm(GcmKey),
    /// Boxed: the expanded HMAC key is large.
    CmHmac(Box<CmHmac>),
}

pub(super) struct CmHmac {
    pub(super) ctr: EncryptingKey,
    pub(super) auth: hmac::Key,
}

/// The sending SRTP (or, from the `_rtcp` constructors, SRTCP: see
/// `super::srtcp`) context of one connection, for packets of any SSRC.
pub struct SrtpTx {
    pub(super) transform: Transform,
    /// Session salt: 12 bytes (GCM) or 14 (AES-CM), zero-padded.
    pub(super) salt: [u8; 14],
}

impl std::fmt::Debug for SrtpTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.transform {
            Transform::Gcm(_) => "gcm",
            Transform::CmHmac(_) => "aes-cm-hmac-sha1-80",
        };
        write!(f, "SrtpTx({kind})")
    }
}

impl SrtpTx {
    /// The context we send with, from a DTLS-SRTP export: the client half
    /// of the material when we were the DTLS client, else the server half
    /// (RFC 5764 §4.2).
    pub fn from_keying(k: &SrtpKeying) -> Result<Self, SrtpTxError> {
        Self::from_keying_with(k, 0)
    }

    /// As [`SrtpTx::from_keying`], the SRTCP context (labels 3-5).
    pub fn from_keying_rtcp(k: &SrtpKeying) -> Result<Self, SrtpTxError> {
        Self::from_keying_with(k, LABELS_RTCP)
    }

    fn from_keying_with(k: &SrtpKeying, labels: u8) -> Result<Self, SrtpTxError> {
        let (key_len, salt_len) = lengths(k.profile)?;
        if k.material.len() != 2 * (key_len + salt_len) {
            return Err(SrtpTxError::BadKeyingMaterial(k.material.len()));
        }
        let (key_at, salt_at) = if k.active {
            (0, 2 * key_len)
        } else {
            (key_len, 2 * key_len + salt_len)
        };
        Self::derived(
            k.profile,
            &k.material[key_at..key_at + key_len],
            &k.material[salt_at..salt_at + salt_len],
            labels,
        )
    }

    /// The context for a master key and salt (lengths per profile: 16/14
    /// AES-CM, 16/12 AES-128-GCM, 32/12 AES-256-GCM).
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpTxError> {
        Self::derived(profile, master_key, master_salt, 0)
    }

    /// Session keys from labels `labels + 0..=2`: 0 for SRTP, 3 for SRTCP.
    fn derived(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
        labels: u8,
    ) -> Result<Self, SrtpTxError> {
        let (key_len, salt_len) = lengths(profile)?;
        if master_key.len() != key_len || master_salt.len() != salt_len {
            return Err(SrtpTxError::BadKeyingMaterial(
                master_key.len() + master_salt.len(),
            ));
        }
        let mut session_key = [0u8; 32];
        derive(
            master_key,
            master_salt,
            labels + LABEL_RTP_ENCRYPTION,
            &mut session_key[..key_len],
        )?;
        let mut salt = [0u8; 14];
        derive(
            master_key,
            master_salt,
            labels + LABEL_RTP_SALT,
            &mut salt[..salt_len],
        )?;
        let key = &session_key[..key_len];
        let transform = match profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let mut auth_key = [0u8; 20];
                derive(
                    master_key,
                    master_salt,
                    labels + LABEL_RTP_AUTH,
                    &mut auth_key,
                )?;
                let unbound =
                    UnboundCipherKey::new(&AES_128, key).map_err(|_| SrtpTxError::Crypto)?;
                Transform::CmHmac(Box::new(CmHmac {
                    ctr: EncryptingKey::ctr(unbound).map_err(|_| SrtpTxError::Crypto)?,
                    auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth_key),
                }))
            }
            SrtpProfile::AEAD_AES_128_GCM | SrtpProfile::AEAD_AES_256_GCM => {
                Transform::Gcm(GcmKey::new(key).ok_or(SrtpTxError::Crypto)?)
            }
            _ => return Err(SrtpTxError::UnknownProfile),
        };
        Ok(Self { transform, salt })
    }

    /// Tests only: the SRTCP context (labels 3-5) of a master key and salt.
    #[cfg(test)]
    pub(super) fn derived_for_tests(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> Self {
        Self::derived(profile, key, salt, LABELS_RTCP).expect("context")
    }

    /// Where the AES-GCM key context is, for [`crate::prefetch::lines`]
    /// with [`GcmKey::LINES`] (None for AES-CM, whose contexts aws-lc-rs
    /// keeps).
    pub fn key_addr(&self) -> Option<usize> {
        match &self.transform {
            Transform::Gcm(key) => Some(key.addr()),
            Transform::CmHmac(_) => None,
        }
    }

    /// Bytes [`SrtpTx::protect_rtp`] appends.
    pub fn overhead(&self) -> usize {
        match self.transform {
            Transform::Gcm(_) => GCM_TAG_LEN,
            Transform::CmHmac(_) => HMAC_TAG_LEN,
        }
    }

    /// Protects, in place, the RTP packet in `packet` (a `header_len` byte
    /// header, extensions included, then the payload) sent with SRTP
    /// `index` (the extended sequence number, RFC 3711 §3.3.1), and
    /// appends the tag. The SSRC is read from the header. Returns false,
    /// leaving `packet` unusable, if the header is shorter than 12 bytes
    /// or longer than the packet, or the crypto library failed.
    pub fn protect_rtp(&self, packet: &mut Vec<u8>, header_len: usize, index: u64) -> bool {
        if header_len < 12 || header_len > packet.len() {
            return false;
        }
        let ssrc = [packet[8], packet[9], packet[10], packet[11]];
        let roc = ((index >> 16) as u32).to_be_bytes();
        match &self.transform {
            Transform::Gcm(key) => {
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc);
                iv[6..10].copy_from_slice(&roc);
                iv[10..12].copy_from_slice(&(index as u16).to_be_bytes());
                for (b, s) in iv.iter_mut().zip(&self.salt[..12]) {
                    *b ^= s;
                }
                let (header, body) = packet.split_at_mut(header_len);
                let Some(tag) = key.seal_in_place(&iv, header, body) else {
                    return false;
                };
                packet.extend_from_slice(&tag);
                true
            }
            Transform::CmHmac(cm) => {
                let CmHmac { ctr, auth } = &**cm;
                let iv = cm_iv(&self.salt, ssrc, index);
                let context = EncryptionContext::Iv128(FixedLength::from(iv));
                if ctr
                    .less_safe_encrypt(&mut packet[header_len..], context)
                    .is_err()
                {
                    return false;
                }
                let mut mac = hmac::Context::with_key(auth);
                mac.update(packet);
                mac.update(&roc);
                let tag = mac.sign();
                packet.extend_from_slice(&tag.as_ref()[..HMAC_TAG_LEN]);
                true
            }
        }
    }
}

/// The AES-CM IV (RFC 3711 §4.1.1): salt·2^16 ^ SSRC·2^64 ^ index·2^16,
/// for an SRTP index (48 bits) or an SRTCP index (31 bits).
pub(super) fn cm_iv(salt: &[u8; 14], ssrc: [u8; 4], index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[4..8].copy_from_slice(&ssrc);
    for (b, x) in iv[6..14].iter_mut().zip(index.to_be_bytes()) {
        *b ^= x;
    }
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// Master key and salt lengths of a profile.
pub(super) fn lengths(profile: SrtpProfile) -> Result<(usize, usize), SrtpTxError> {
    match profile {
        SrtpProfile::AES128_CM_SHA1_80 => Ok((16, 14)),
        SrtpProfile::AEAD_AES_128_GCM => Ok((16, 12)),
        SrtpProfile::AEAD_AES_256_GCM => Ok((32, 12)),
        _ => Err(SrtpTxError::UnknownProfile),
    }
}

/// RFC 3711 §4.3.1/§4.3.3 with kdr 0: `out` = the AES-CM keystream under
/// `master_key` from IV (`master_salt` left-aligned in 14 bytes, byte 7
/// xor `label`) · 2^16.
pub(super) fn derive(
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), SrtpTxError> {
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    let algorithm = if master_key.len() == 32 {
        &AES_256
    } else {
        &AES_128
    };
    let key = UnboundCipherKey::new(algorithm, master_key).map_err(|_| SrtpTxError::Crypto)?;
    let ctr = EncryptingKey::ctr(key).map_err(|_| SrtpTxError::Crypto)?;
    out.fill(0);
    ctr.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| SrtpTxError::Crypto)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 3711 Appendix B.3: the key derivation test vectors.
    #[test]
    fn derives_rfc3711_b3_session_keys() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut k = [0u8; 16];
        derive(&key, &salt, LABEL_RTP_ENCRYPTION, &mut k).expect("derive");
        assert_eq!(k.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&key, &salt, LABEL_RTP_SALT, &mut s).expect("derive");
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut a = [0u8; 20];
        derive(&key, &salt, LABEL_RTP_AUTH, &mut a).expect("derive");
        assert_eq!(a.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    /// A 28 byte header (one-byte extensions) and a 100 byte payload.
    fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x90, 0x6f];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&960u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x03, 0x10, 0xaa, 0x22, 0x01, 0x02, 0x03]);
        p.extend_from_slice(&[0x31, 0x00, 0x05, 0x40, 0x00, 0x00]);
        p.extend((0..100).map(|i| i as u8));
        p
    }

    /// Our protect equals str0m's own primitives (its provider's ciphers,
    /// IV and HMAC helpers) given the same session keys, for each profile,
    /// past a ROC rollover.
    #[test]
    fn matches_str0ms_primitives_for_every_profile() {
        use str0m::crypto::{AeadAes128Gcm, AeadAes256Gcm, Aes128CmSha1_80};
        let provider = str0m::crypto::from_feature_flags();
        let srtp = provider.srtp_provider;
        let index: u64 = (3 << 16) | 0xfffe;
        let ssrc = 0x1234_5678;
        let plain = rtp_packet(index as u16, ssrc);
        let hlen = 28;
        for profile in [
            SrtpProfile::AEAD_AES_256_GCM,
            SrtpProfile::AEAD_AES_128_GCM,
            SrtpProfile::AES128_CM_SHA1_80,
        ] {
            let (key_len, salt_len) = lengths(profile).expect("profile");
            let master_key: Vec<u8> = (0..key_len as u8).map(|i| i * 7 + 1).collect();
            let master_salt: Vec<u8> = (0..salt_len as u8).map(|i| i * 3 + 5).collect();
            let tx = SrtpTx::new(profile, &master_key, &master_salt).expect("ctx");
            let mut ours = plain.clone();
            assert!(tx.protect_rtp(&mut ours, hlen, index));

            let mut key = vec![0u8; key_len];
            derive(&master_key, &master_salt, LABEL_RTP_ENCRYPTION, &mut key).expect("k");
            let mut salt = vec![0u8; salt_len];
            derive(&master_key, &master_salt, LABEL_RTP_SALT, &mut salt).expect("s");
            let body = &plain[hlen..];
            let mut theirs = plain[..hlen].to_vec();
            let roc = (index >> 16) as u32;
            match profile {
                SrtpProfile::AES128_CM_SHA1_80 => {
                    let salt: [u8; 14] = salt.try_into().expect("salt");
                    let iv = Aes128CmSha1_80::rtp_iv(salt, ssrc, index);
                    let mut c = srtp
                        .aes_128_cm_sha1_80()
                        .create_cipher(key.try_into().expect("key"), true);
                    // aws-lc-rs's CTR wants room for a whole last block.
                    let mut out = vec![0u8; body.len() + 16];
                    c.encrypt(&iv, body, &mut out).expect("encrypt");
                    theirs.extend_from_slice(&out[..body.len()]);
                    let mut auth = [0u8; 20];
                    derive(&master_key, &master_salt, LABEL_RTP_AUTH, &mut auth).expect("a");
                    let end = theirs.len();
                    theirs.resize(end + HMAC_TAG_LEN, 0);
                    let hmac =
                        |k: &[u8], parts: &[&[u8]]| provider.sha1_hmac_provider.sha1_hmac(k, parts);
                    Aes128CmSha1_80::rtp_hmac(hmac, &auth, &mut theirs, index, end);
                }
                SrtpProfile::AEAD_AES_128_GCM => {
                    let iv = AeadAes128Gcm::rtp_iv(
                        salt.try_into().expect("salt"),
                        ssrc,
                        roc,
                        index as u16,
                    );
                    let mut c = srtp
                        .aead_aes_128_gcm()
                        .create_cipher(key.try_into().expect("key"), true);
                    let mut out = vec![0u8; body.len() + 16];
                    c.encrypt(&iv, &plain[..hlen], body, &mut out)
                        .expect("encrypt");
                    theirs.extend_from_slice(&out);
                }
                _ => {
                    let iv = AeadAes256Gcm::rtp_iv(
                        salt.try_into().expect("salt"),
                        ssrc,
                        roc,
                        index as u16,
                    );
                    let mut c = srtp
                        .aead_aes_256_gcm()
                        .create_cipher(key.try_into().expect("key"), true);
                    let mut out = vec![0u8; body.len() + 16];
                    c.encrypt(&iv, &plain[..hlen], body, &mut out)
                        .expect("encrypt");
                    theirs.extend_from_slice(&out);
                }
            }
            assert_eq!(ours, theirs, "{profile:?}");
        }
    }

    #[test]
    fn refuses_bad_lengths_and_short_headers() {
        let keying = SrtpKeying {
            profile: SrtpProfile::AEAD_AES_256_GCM,
            material: vec![0; 10],
            active: false,
        };
        assert_eq!(
            SrtpTx::from_keying(&keying).err(),
            Some(SrtpTxError::BadKeyingMaterial(10))
        );
        let tx = SrtpTx::new(SrtpProfile::AEAD_AES_128_GCM, &[1; 16], &[2; 12]).expect("ctx");
        let mut short = vec![0x80; 8];
        assert!(!tx.protect_rtp(&mut short, 12, 1));
        let mut p = vec![0x80; 40];
        assert!(tx.protect_rtp(&mut p, 12, 1));
        assert_eq!(p.len(), 40 + tx.overhead());
    }
}
