//! The DTLS-SRTP keying material of a peer connection, for RTP the server
//! protects and sends itself (`super::srtp_tx`) instead of through str0m.
//!
//! str0m keeps its SRTP keys private, but its DTLS implementation is
//! pluggable: [`RtcConfig::set_crypto_provider`] takes a
//! [`CryptoProvider`] whose `dtls_provider` creates each connection's DTLS
//! instance. [`build`] installs a provider whose instances wrap str0m's own
//! (aws-lc-rs) ones and copy the exported keying material (RFC 5764 §4.2,
//! `DtlsOutput::KeyingMaterial`) and the role (`is_active`) into a
//! [`KeySink`] as they pass through unchanged. str0m creates the DTLS
//! instance exactly once per `Rtc`, inside `RtcConfig::build`, on the
//! calling thread: a thread-local slot filled just before `build` ties the
//! instance to its connection's sink.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::{Rtc, RtcConfig};

/// One DTLS handshake's SRTP keying material.
#[derive(Clone)]
pub struct SrtpKeying {
    /// The negotiated protection profile.
    pub profile: SrtpProfile,
    /// client_key | server_key | client_salt | server_salt (RFC 5764 §4.2).
    pub material: Vec<u8>,
    /// We were the DTLS client: we send with the client half.
    pub active: bool,
}

impl std::fmt::Debug for SrtpKeying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        f.debug_struct("SrtpKeying")
            .field("profile", &self.profile)
            .field("len", &self.material.len())
            .field("active", &self.active)
            .finish()
    }
}

/// Where a connection's DTLS instance leaves its keying material.
#[derive(Debug, Default)]
pub struct KeySink {
    keying: Mutex<Option<SrtpKeying>>,
}

impl KeySink {
    /// The keying material of the last completed handshake, if any.
    pub fn keying(&self) -> Option<SrtpKeying> {
        self.keying.lock().ok().and_then(|k| k.clone())
    }
}

thread_local! {
    /// The sink the next DTLS instance created on this thread reports to.
    static NEXT_SINK: RefCell<Option<Arc<KeySink>>> = const { RefCell::new(None) };
}

/// Builds `config` into an `Rtc` whose keying material lands in the
/// returned sink.
pub fn build(config: RtcConfig, now: Instant) -> (Rtc, Arc<KeySink>) {
    let sink = Arc::new(KeySink::default());
    NEXT_SINK.with(|s| *s.borrow_mut() = Some(sink.clone()));
    let rtc = config.set_crypto_provider(provider()).build(now);
    // Normally taken by `new_dtls`; never left for another connection.
    NEXT_SINK.with(|s| s.borrow_mut().take());
    (rtc, sink)
}

/// str0m's default provider with the capturing DTLS provider in.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            static DTLS: OnceLock<CapturingDtls> = OnceLock::new();
            let base = str0m::crypto::from_feature_flags();
            let dtls = DTLS.get_or_init(|| CapturingDtls {
                inner: base.dtls_provider,
            });
            Arc::new(CryptoProvider {
                dtls_provider: dtls,
                ..base
            })
        })
        .clone()
}

#[derive(Debug)]
struct CapturingDtls {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for CapturingDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        let sink = NEXT_SINK
            .with(|s| s.borrow_mut().take())
            .unwrap_or_default();
        Ok(Box::new(CapturingInstance { inner, sink }))
    }
}

#[derive(Debug)]
struct CapturingInstance {
    inner: Box<dyn DtlsInstance>,
    sink: Arc<KeySink>,
}

impl DtlsInstance for CapturingInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(km, profile) = &out {
            let active = self.inner.is_active();
            if let Ok(mut k) = self.sink.keying.lock() {
                *k = Some(SrtpKeying {
                    profile: *profile,
                    material: km.to_vec(),
                    active,
                });
            }
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::super::srtp_tx::SrtpTx;
    use super::super::test_pair::Pair;

    /// An RTP packet: 12 byte header, then `payload`.
    fn rtp(pair: &Pair, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, *pair.pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
        p.extend_from_slice(&(*pair.ssrc).to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// A packet protected with the keys captured from the server's DTLS
    /// handshake is accepted by the client's str0m (which checks the tag
    /// and decrypts with its own keys), and arrives as sent; one under the
    /// other half of the material is dropped.
    #[test]
    fn captured_keys_protect_rtp_the_peer_accepts() {
        let mut pair = Pair::connected();
        let keying = pair.server.keys.keying().expect("keys captured");
        let tx = SrtpTx::from_keying(&keying).expect("context");
        let payload: Vec<u8> = (0..100u8).collect();
        for seq in [1u16, 2, 3] {
            let mut p = rtp(&pair, seq, &payload);
            assert!(tx.protect_rtp(&mut p, 12, u64::from(seq)));
            pair.send_to_client(p);
        }
        assert_eq!(pair.received.len(), 3, "every packet accepted");
        assert!(
            pair.received.iter().all(|p| p.0 == payload),
            "decrypted as sent"
        );

        let mut wrong = keying.clone();
        wrong.active = !keying.active;
        let bad = SrtpTx::from_keying(&wrong).expect("context");
        let mut p = rtp(&pair, 4, &payload);
        assert!(bad.protect_rtp(&mut p, 12, 4));
        pair.send_to_client(p);
        assert_eq!(
            pair.received.len(),
            3,
            "a packet under the wrong key is dropped"
        );
    }
}
