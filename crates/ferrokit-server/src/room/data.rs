//! Data packet routing (livekit_models.proto `DataPacket`).
//!
//! The server stamps the sender's sid and identity (identity left empty for a
//! hidden sender), drops packets from participants without canPublishData,
//! and forwards to `destination_identities` (or everyone else) on the same
//! kind of channel the packet came on.

use std::sync::Arc;

use livekit_protocol as proto;
use prost::Message;

use super::{Output, Room};

/// One encoded packet for delivery, shared by every receiver.
#[derive(Debug, Clone)]
pub struct DataDelivery {
    /// Protobuf-encoded `DataPacket`, sender fields filled in.
    pub bytes: Arc<[u8]>,
    /// True for the `_reliable` channel, false for `_lossy`.
    pub reliable: bool,
}

/// Why a data packet was not forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataRefusal {
    #[error("sender not in room")]
    UnknownSender,
    #[error("canPublishData is not granted")]
    NotAllowed,
}

impl Room {
    /// Routes a `DataPacket` received from `sender` on a reliable
    /// (`reliable == true`) or lossy channel.
    pub fn route_data(
        &self,
        sender: &str,
        mut packet: proto::DataPacket,
        reliable: bool,
    ) -> Result<Vec<Output>, DataRefusal> {
        let p = self.participant(sender).ok_or(DataRefusal::UnknownSender)?;
        if !p.grant.can_publish_data() {
            return Err(DataRefusal::NotAllowed);
        }
        let identity = if p.hidden() {
            String::new()
        } else {
            p.info.identity.clone()
        };
        // Destinations: the packet's, else the legacy ones inside a user packet.
        let mut identities = std::mem::take(&mut packet.destination_identities);
        let mut sids = Vec::new();
        if let Some(proto::data_packet::Value::User(user)) = &mut packet.value {
            if identities.is_empty() {
                identities = user.destination_identities.clone();
            }
            sids = std::mem::take(&mut user.destination_sids);
            user.participant_sid = p.sid().to_string();
            user.participant_identity = identity.clone();
        }
        packet.participant_sid = p.sid().to_string();
        packet.participant_identity = identity;
        let bytes: Arc<[u8]> = packet.encode_to_vec().into();
        let everyone = identities.is_empty() && sids.is_empty();
        let outputs = self
            .participants
            .iter()
            .filter(|o| o.sid() != sender)
            .filter(|o| {
                everyone
                    || identities.contains(&o.info.identity)
                    || sids.iter().any(|s| s == o.sid())
            })
            .map(|o| Output::Data {
                to: o.sid().to_string(),
                data: DataDelivery {
                    bytes: bytes.clone(),
                    reliable,
                },
            })
            .collect();
        Ok(outputs)
    }
}
