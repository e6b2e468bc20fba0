//! AES-GCM (AEAD_AES_128_GCM / AEAD_AES_256_GCM, 16-byte tag, 12-byte
//! nonce; RFC 7714 §8-9) through aws-lc's own `EVP_AEAD` API: the same
//! library and code as aws-lc-rs, with the key context held by us.
//!
//! Why not aws-lc-rs's `LessSafeKey`: it keeps the `EVP_AEAD_CTX` (~600
//! bytes of expanded AES key and GHASH table) behind a private pointer. On
//! the direct audio path each subscriber's context is cold when its turn
//! comes (200 subscribers, 20 ms apart), and the fan-out loop can only
//! prefetch it (`crate::prefetch`) if it knows where it is.

use std::ptr::NonNull;

use aws_lc_sys::{
    EVP_AEAD_CTX_free, EVP_AEAD_CTX_new, EVP_AEAD_CTX_open, EVP_AEAD_CTX_seal_scatter,
    EVP_aead_aes_128_gcm, EVP_aead_aes_256_gcm, EVP_AEAD_CTX,
};

/// Tag bytes (RFC 7714 §9: 16).
pub const TAG_LEN: usize = 16;
/// Nonce bytes (RFC 7714 §8.1: 12).
pub const NONCE_LEN: usize = 12;

/// An expanded AES-GCM key: 16 bytes (AES-128) or 32 (AES-256).
pub struct GcmKey {
    /// Owned: made by `EVP_AEAD_CTX_new`, freed on drop, never shared.
    ctx: NonNull<EVP_AEAD_CTX>,
}

// SAFETY: the context is plain memory owned by this value; aws-lc keeps no
// thread-local or thread-bound state in it, and it is only used through
// `&self` (seal/open read it) or dropped once.
#[allow(unsafe_code)]
unsafe impl Send for GcmKey {}

impl GcmKey {
    /// Cache lines the context spans (the struct, plus one for where the
    /// allocation starts within a line).
    pub const LINES: usize = std::mem::size_of::<EVP_AEAD_CTX>().div_ceil(64) + 1;

    /// Expands `key` (16 or 32 bytes). None for another length, or if
    /// aws-lc refuses it.
    #[allow(unsafe_code)]
    pub fn new(key: &[u8]) -> Option<Self> {
        // SAFETY: the EVP_aead_* functions return pointers to static tables.
        let aead = match key.len() {
            16 => unsafe { EVP_aead_aes_128_gcm() },
            32 => unsafe { EVP_aead_aes_256_gcm() },
            _ => return None,
        };
        // SAFETY: `key` is valid for `key.len()` bytes; aws-lc copies what
        // it needs (the expanded key) into the new context.
        let ctx = unsafe { EVP_AEAD_CTX_new(aead, key.as_ptr(), key.len(), TAG_LEN) };
        NonNull::new(ctx).map(|ctx| Self { ctx })
    }

    /// The context's address, for [`crate::prefetch::lines`] with
    /// [`GcmKey::LINES`].
    pub fn addr(&self) -> usize {
        self.ctx.as_ptr() as usize
    }

    /// Encrypts `data` in place and returns the tag; `aad` is
    /// authenticated only. None if aws-lc refuses (it does not for these
    /// lengths).
    #[allow(unsafe_code)]
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> Option<[u8; TAG_LEN]> {
        let mut tag = [0u8; TAG_LEN];
        let mut tag_len = 0usize;
        // SAFETY: the context is live; `data` is both input and output, as
        // aws-lc allows when the two are the same pointer; the tag buffer
        // holds TAG_LEN bytes and its length is passed; nonce, aad and the
        // (empty) extra input are valid for the lengths given.
        let ok = unsafe {
            EVP_AEAD_CTX_seal_scatter(
                self.ctx.as_ptr(),
                data.as_mut_ptr(),
                tag.as_mut_ptr(),
                &mut tag_len,
                TAG_LEN,
                nonce.as_ptr(),
                NONCE_LEN,
                data.as_ptr(),
                data.len(),
                std::ptr::null(),
                0,
                aad.as_ptr(),
                aad.len(),
            )
        };
        (ok == 1 && tag_len == TAG_LEN).then_some(tag)
    }

    /// Decrypts and verifies `data` (ciphertext then tag) in place.
    /// Returns the plaintext's length (the first bytes of `data`), or None
    /// if it is shorter than a tag or does not verify.
    #[allow(unsafe_code)]
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> Option<usize> {
        if data.len() < TAG_LEN {
            return None;
        }
        let mut out_len = 0usize;
        // SAFETY: as in `seal_in_place`; the output (at most the input's
        // length, which is passed as its capacity) overwrites the input.
        let ok = unsafe {
            EVP_AEAD_CTX_open(
                self.ctx.as_ptr(),
                data.as_mut_ptr(),
                &mut out_len,
                data.len(),
                nonce.as_ptr(),
                NONCE_LEN,
                data.as_ptr(),
                data.len(),
                aad.as_ptr(),
                aad.len(),
            )
        };
        (ok == 1 && out_len + TAG_LEN == data.len()).then_some(out_len)
    }
}

impl Drop for GcmKey {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: made by EVP_AEAD_CTX_new, freed exactly once, here.
        unsafe { EVP_AEAD_CTX_free(self.ctx.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};

    /// Our seal equals aws-lc-rs's, and our open inverts it (and refuses
    /// a flipped bit), for both key sizes.
    #[test]
    fn matches_aws_lc_rs_and_round_trips() {
        for (key, alg) in [
            (&[7u8; 16][..], &AES_128_GCM),
            (&[9u8; 32][..], &AES_256_GCM),
        ] {
            let ours = GcmKey::new(key).expect("key");
            let theirs = LessSafeKey::new(UnboundKey::new(alg, key).expect("key"));
            let nonce = [3u8; NONCE_LEN];
            let aad = b"rtp header bytes";
            let plain: Vec<u8> = (0..100u8).collect();

            let mut a = plain.clone();
            let tag = ours.seal_in_place(&nonce, aad, &mut a).expect("seal");
            let mut b = plain.clone();
            let their_tag = theirs
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut b,
                )
                .expect("seal");
            assert_eq!(a, b);
            assert_eq!(&tag[..], their_tag.as_ref());
            assert_ne!(a, plain);

            let mut sealed = [a.clone(), tag.to_vec()].concat();
            let n = ours.open_in_place(&nonce, aad, &mut sealed).expect("open");
            assert_eq!(&sealed[..n], &plain[..]);

            let mut tampered = [a, tag.to_vec()].concat();
            tampered[5] ^= 1;
            assert_eq!(ours.open_in_place(&nonce, aad, &mut tampered), None);
            assert_eq!(ours.open_in_place(&nonce, aad, &mut [0u8; 15]), None);
        }
        assert!(GcmKey::new(&[0u8; 24]).is_none());
    }
}
