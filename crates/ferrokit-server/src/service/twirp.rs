//! The server API: LiveKit's `RoomService` over Twirp
//! (`POST /twirp/livekit.RoomService/<Method>`, livekit_room.proto).
//!
//! Bodies are protobuf (`application/protobuf`) or protobuf-JSON
//! (`application/json`); the answer uses the request's encoding. The caller
//! authenticates with `Authorization: Bearer <token>`; CreateRoom and
//! DeleteRoom need the roomCreate grant, ListRooms roomList, every other
//! method roomAdmin for the room named in the request. Errors are Twirp's
//! JSON errors (`{"code","msg"}`) with the matching HTTP status.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use livekit_protocol as proto;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::Claims;
use crate::room::{AdminError, Output, Room};
use crate::rooms::RoomEntry;
use crate::server::ServerState;

/// A Twirp error: code (Twirp's names) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpError {
    pub code: &'static str,
    pub msg: String,
}

impl TwirpError {
    fn new(code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }

    /// The HTTP status Twirp maps the code to.
    pub fn status(&self) -> StatusCode {
        match self.code {
            "invalid_argument" | "malformed" | "out_of_range" => StatusCode::BAD_REQUEST,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "not_found" | "bad_route" => StatusCode::NOT_FOUND,
            "already_exists" | "aborted" => StatusCode::CONFLICT,
            "failed_precondition" => StatusCode::PRECONDITION_FAILED,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "unimplemented" => StatusCode::NOT_IMPLEMENTED,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<AdminError> for TwirpError {
    fn from(e: AdminError) -> Self {
        let code = match e {
            AdminError::NotFound(_) => "not_found",
            AdminError::InvalidArgument(_) => "invalid_argument",
            AdminError::FailedPrecondition(_) => "failed_precondition",
        };
        Self::new(code, e.to_string())
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "msg": self.msg }).to_string();
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

type Result<T> = std::result::Result<T, TwirpError>;

/// Request encoding, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

fn encoding(headers: &HeaderMap) -> Result<Encoding> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    match mime {
        "application/protobuf" | "application/x-protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(TwirpError::new(
            "bad_route",
            format!(
                "unexpected Content-Type {ct:?} (use application/protobuf or application/json)"
            ),
        )),
    }
}

fn decode<T: Message + Default + DeserializeOwned>(enc: Encoding, body: &[u8]) -> Result<T> {
    match enc {
        Encoding::Protobuf => T::decode(body)
            .map_err(|e| TwirpError::new("malformed", format!("bad protobuf body: {e}"))),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| TwirpError::new("malformed", format!("bad JSON body: {e}"))),
    }
}

fn encode<T: Message + Serialize>(enc: Encoding, msg: &T) -> Response {
    match enc {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/protobuf")],
            msg.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => match serde_json::to_vec(msg) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => TwirpError::new("internal", e.to_string()).into_response(),
        },
    }
}

fn claims(state: &ServerState, headers: &HeaderMap) -> Result<Claims> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| TwirpError::new("unauthenticated", "missing Authorization: Bearer token"))?;
    state
        .keys
        .verify(token)
        .map_err(|e| TwirpError::new("unauthenticated", e.to_string()))
}

fn need(granted: bool, what: &str) -> Result<()> {
    if granted {
        Ok(())
    } else {
        Err(TwirpError::new(
            "permission_denied",
            format!("token lacks the {what} grant"),
        ))
    }
}

fn need_admin(c: &Claims, room: &str) -> Result<()> {
    need(
        c.video.room_admin && c.video.room == room,
        "roomAdmin grant for this room",
    )
}

fn room(state: &ServerState, name: &str) -> Result<Arc<RoomEntry>> {
    state
        .rooms
        .get(name)
        .ok_or_else(|| TwirpError::new("not_found", format!("room {name:?} not found")))
}

/// Runs an API operation on a room, dispatching its outputs on success.
fn apply<R>(
    entry: &Arc<RoomEntry>,
    f: impl FnOnce(&mut Room) -> std::result::Result<(R, Vec<Output>), AdminError>,
) -> Result<R> {
    entry.update(|r| match f(r) {
        Ok((res, out)) => (Ok(res), out),
        Err(e) => (Err(TwirpError::from(e)), Vec::new()),
    })
}

fn cors(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*, Authorization, Content-Type, Twirp-Version"),
    );
    res
}

/// CORS preflight for the API.
pub async fn preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

/// `POST /twirp/livekit.RoomService/{method}`.
pub async fn room_service(
    State(state): State<Arc<ServerState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = match call(&state, &method, &headers, &body) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(method = %method, code = e.code, "RoomService refused: {}", e.msg);
            e.into_response()
        }
    };
    cors(res)
}

fn call(state: &ServerState, method: &str, headers: &HeaderMap, body: &[u8]) -> Result<Response> {
    let enc = encoding(headers)?;
    let c = claims(state, headers)?;
    let now = Instant::now();
    Ok(match method {
        "CreateRoom" => {
            need(c.video.room_create, "roomCreate")?;
            let req: proto::CreateRoomRequest = decode(enc, body)?;
            if req.name.is_empty() {
                return Err(TwirpError::new("invalid_argument", "name is required"));
            }
            let (entry, _) = state
                .rooms
                .create(&req.name, state.config.room_defaults(), |r| {
                    r.configure(&req)
                });
            encode(enc, &entry.read(Room::info))
        }
        "ListRooms" => {
            need(c.video.room_list, "roomList")?;
            let req: proto::ListRoomsRequest = decode(enc, body)?;
            let mut rooms: Vec<proto::Room> = state
                .rooms
                .all()
                .iter()
                .map(|e| e.read(Room::info))
                .filter(|r| req.names.is_empty() || req.names.contains(&r.name))
                .collect();
            rooms.sort_by_key(|r| r.creation_time_ms);
            encode(enc, &proto::ListRoomsResponse { rooms })
        }
        "DeleteRoom" => {
            need(c.video.room_create, "roomCreate")?;
            let req: proto::DeleteRoomRequest = decode(enc, body)?;
            if !state.rooms.delete(&req.room) {
                return Err(TwirpError::new(
                    "not_found",
                    format!("room {:?} not found", req.room),
                ));
            }
            encode(enc, &proto::DeleteRoomResponse {})
        }
        "UpdateRoomMetadata" => {
            let req: proto::UpdateRoomMetadataRequest = decode(enc, body)?;
            need_admin(&c, &req.room)?;
            let info = apply(&room(state, &req.room)?, |r| {
                Ok(r.set_room_metadata(&req.metadata))
            })?;
            encode(enc, &info)
        }
        "ListParticipants" => {
            let req: proto::ListParticipantsRequest = decode(enc, body)?;
            need_admin(&c, &req.room)?;
            let participants = room(state, &req.room)?.read(Room::participants_info);
            encode(enc, &proto::ListParticipantsResponse { participants })
        }
        "GetParticipant" => {
            let req: proto::RoomParticipantIdentity = decode(enc, body)?;
            need_admin(&c, &req.room)?;
            let info = room(state, &req.room)?
                .read(|r| {
                    r.participant_by_identity(&req.identity)
                        .map(|p| p.info.clone())
                })
                .ok_or_else(|| AdminError::NotFound(format!("participant {:?}", req.identity)))?;
            encode(enc, &info)
        }
        "RemoveParticipant" => {
            let req: proto::RoomParticipantIdentity = decode(enc, body)?;
            need_admin(&c, &req.room)?;
            apply(&room(state, &req.room)?, |r| {
                Ok(((), r.remove_participant(&req.identity, now)?))
            })?;
            encode(enc, &proto::RemoveParticipantResponse {})
        }
        "MutePublishedTrack" => {
            let req: proto::MuteRoomTrackRequest = decode(enc, body)?;
            need_admin(&c, &req.room)?;
            let remote_unmute = state.config.room.enable_remote_unmute;
            let track = apply(&room(state, &req.room)?, |r| {
                r.mute_published_track(&req.identity, &req.track_sid, req.muted, remote_unmute)
            })?;
            encode(enc, &proto::MuteRoomTrackResponse { track: Some(track) })
        }
        "UpdateParticipant" => {
            let req: proto::UpdateParticipantRequest = decode(enc, body)?;
            need_admin(&c, &req.room)?;
            let info = apply(&room(state, &req.room)?, |r| r.update_participant(&req))?;
            encode(enc, &info)
        }
        "UpdateSubscriptions" => {
            let req: proto::UpdateSubscriptionsRequest = decode(enc, body)?;
            need_admin(&c, &req.room)?;
            let update = proto::UpdateSubscription {
                track_sids: req.track_sids.clone(),
                subscribe: req.subscribe,
                participant_tracks: req.participant_tracks.clone(),
            };
            apply(&room(state, &req.room)?, |r| {
                Ok(((), r.update_subscriptions_of(&req.identity, &update)?))
            })?;
            encode(enc, &proto::UpdateSubscriptionsResponse {})
        }
        "SendData" => {
            let req: proto::SendDataRequest = decode(enc, body)?;
            need_admin(&c, &req.room)?;
            apply(&room(state, &req.room)?, |r| {
                Ok(((), r.send_server_data(&req)))
            })?;
            encode(enc, &proto::SendDataResponse {})
        }
        "ForwardParticipant" | "MoveParticipant" | "PerformRpc" => {
            return Err(TwirpError::new(
                "unimplemented",
                format!("{method} is not supported by ferrokit yet"),
            ))
        }
        other => {
            return Err(TwirpError::new(
                "bad_route",
                format!("no method livekit.RoomService/{other}"),
            ))
        }
    })
}
