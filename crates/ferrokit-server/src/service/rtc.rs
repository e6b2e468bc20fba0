//! `/rtc` (dual PC) and `/rtc/v1` (single PC): validation, upgrade, and the
//! join that starts a participant's session.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use livekit_protocol as proto;
use proto::signal_response::Message as Msg;

use super::join::{parse_join, JoinIntent, JoinRefusal};
use crate::room::JoinParams;
use crate::server::ServerState;
use crate::session::{self, Session, SessionContext, PING_INTERVAL_SECS, PING_TIMEOUT_SECS};

/// The LiveKit server version we speak (SDKs gate features on >= 1.8.0).
pub const LIVEKIT_VERSION: &str = "1.9.0";
/// Signal protocol version reported in `ServerInfo.protocol`. Below 18, so
/// clients open their data channels in-band (DCEP) in both modes.
pub const SERVER_PROTOCOL: i32 = 16;

type Q = Query<HashMap<String, String>>;

fn refusal(r: JoinRefusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        r.reason,
    )
        .into_response()
}

fn check(
    state: &ServerState,
    single_pc: bool,
    q: &HashMap<String, String>,
    h: &HeaderMap,
) -> Result<JoinIntent, JoinRefusal> {
    let auth = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let intent = parse_join(single_pc, q, auth, &state.keys)?;
    if state.shutting_down() {
        return Err(JoinRefusal {
            status: 503,
            reason: "server is shutting down".into(),
        });
    }
    let full = state
        .rooms
        .get(&intent.room)
        .is_some_and(|r| r.read(|r| r.is_full_for(&intent.claims.sub)));
    if full && !intent.claims.video.hidden {
        return Err(room_full());
    }
    Ok(intent)
}

fn room_full() -> JoinRefusal {
    JoinRefusal {
        status: 403,
        reason: "room has reached its max participants".into(),
    }
}

fn validate(
    state: &ServerState,
    single_pc: bool,
    q: &HashMap<String, String>,
    h: &HeaderMap,
) -> Response {
    match check(state, single_pc, q, h) {
        Ok(_) => ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], "success").into_response(),
        Err(r) => {
            tracing::info!("validate refused: {} {}", r.status, r.reason);
            refusal(r)
        }
    }
}

pub async fn validate_v0(State(s): State<Arc<ServerState>>, Query(q): Q, h: HeaderMap) -> Response {
    validate(&s, false, &q, &h)
}

pub async fn validate_v1(State(s): State<Arc<ServerState>>, Query(q): Q, h: HeaderMap) -> Response {
    validate(&s, true, &q, &h)
}

pub async fn rtc_v0(
    State(s): State<Arc<ServerState>>,
    Query(q): Q,
    h: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    upgrade(s, false, q, h, ws)
}

pub async fn rtc_v1(
    State(s): State<Arc<ServerState>>,
    Query(q): Q,
    h: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    upgrade(s, true, q, h, ws)
}

/// Read buffer of a signal WebSocket, bytes. tungstenite's default, 128
/// KiB, was allocated per participant and zeroed before every read, for
/// client messages of a few KiB at most (an offer); a longer message is
/// read in several chunks.
const WS_READ_BUFFER_BYTES: usize = 8 << 10;

fn upgrade(
    state: Arc<ServerState>,
    single_pc: bool,
    q: HashMap<String, String>,
    h: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let intent = match check(&state, single_pc, &q, &h) {
        Ok(i) => i,
        Err(r) => {
            tracing::info!("join refused: {} {}", r.status, r.reason);
            return refusal(r);
        }
    };
    match ws {
        Ok(ws) => ws
            .read_buffer_size(WS_READ_BUFFER_BYTES)
            .on_upgrade(move |socket| start_session(state, intent, socket)),
        Err(e) => e.into_response(),
    }
}

/// Joins the room and runs the participant's session to its end.
async fn start_session(state: Arc<ServerState>, intent: JoinIntent, socket: WebSocket) {
    let _guard = state.session_guard();
    if intent.reconnect {
        // Resume is not supported yet: ask for a full reconnect.
        reject_resume(socket).await;
        return;
    }
    let config = &state.config;
    let room = state
        .rooms
        .get_or_create(&intent.room, config.room_defaults());
    let (mailbox, ctrl_rx) = session::mailbox(&state.egress);
    let cell = mailbox.media.clone();
    let claims = intent.claims.clone();
    let params = JoinParams {
        identity: claims.sub.clone(),
        name: claims.name.clone(),
        metadata: claims.metadata.clone(),
        attributes: claims.attributes.clone(),
        kind: claims.participant_kind(),
        grant: claims.video.clone(),
        auto_subscribe: intent.auto_subscribe,
        client_protocol: intent.client_protocol,
    };
    let hidden = params.grant.hidden;
    let joined = room.update(|r| {
        if !hidden && r.is_full_for(&params.identity) {
            return (None, Vec::new());
        }
        let (joined, out) = r.join(params, crate::rooms::unix_ms());
        room.add_mailbox(&joined.participant.sid, mailbox);
        (Some(joined), out)
    });
    let Some(joined) = joined else {
        // Filled up between the check before the upgrade and now.
        tracing::info!(room = %intent.room, identity = %claims.sub, "join refused: {}", room_full().reason);
        send_leave(
            socket,
            crate::room::leave(proto::DisconnectReason::JoinFailure),
        )
        .await;
        return;
    };
    let sid = joined.participant.sid.clone();
    tracing::info!(room = %intent.room, participant = %sid, identity = %claims.sub,
        single_pc = intent.single_pc, "participant joined");
    let can_subscribe = claims.video.can_subscribe();
    let join = proto::JoinResponse {
        room: Some(joined.room),
        participant: Some(joined.participant),
        other_participants: joined.others,
        server_version: LIVEKIT_VERSION.into(),
        server_info: Some(proto::ServerInfo {
            edition: proto::server_info::Edition::Standard as i32,
            version: LIVEKIT_VERSION.into(),
            protocol: SERVER_PROTOCOL,
            node_id: state.node_id.clone(),
            debug_info: format!("ferrokit {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        }),
        subscriber_primary: !intent.single_pc && can_subscribe,
        ping_interval: PING_INTERVAL_SECS,
        ping_timeout: PING_TIMEOUT_SECS,
        enabled_publish_codecs: [
            "audio/opus",
            "audio/red",
            "video/VP8",
            "video/H264",
            "video/VP9",
            // AV1 SVC decodes once the dependency descriptor is forwarded
            // (`rtc::extensions`, `sfu::dependency_descriptor`).
            "video/AV1",
        ]
        .iter()
        .map(|m| proto::Codec {
            mime: m.to_string(),
            fmtp_line: String::new(),
        })
        .collect(),
        ..Default::default()
    };
    let keys = state.keys.clone();
    let refresh_claims = claims.clone();
    let ctx = Arc::new(SessionContext {
        mux: state.mux.clone(),
        candidate_addr: state.candidate_addr,
        departure_timeout: config.departure_timeout(),
        metrics: state.metrics.clone(),
        egress: state.egress.clone(),
        refresh_token: Box::new(move || {
            let mut c = refresh_claims.clone();
            c.exp = crate::auth::unix_now() + 3600;
            c.nbf = 0;
            let secret = keys.secret(&c.iss)?;
            crate::auth::sign(&c, secret).ok()
        }),
    });
    match Session::new(
        sid.clone(),
        room.clone(),
        ctx,
        intent.single_pc,
        ctrl_rx,
        &cell,
    ) {
        Ok((session, inboxes)) => {
            session
                .run(
                    cell,
                    inboxes,
                    socket,
                    vec![Msg::Join(join)],
                    intent.publisher_offer,
                )
                .await
        }
        Err(e) => {
            tracing::error!(participant = %sid, "could not create transport: {e}");
            room.update(|r| ((), r.leave(&sid, std::time::Instant::now())));
            room.remove_mailbox(&sid);
        }
    }
}

async fn reject_resume(socket: WebSocket) {
    let leave = proto::LeaveRequest {
        can_reconnect: true,
        reason: proto::DisconnectReason::StateMismatch as i32,
        action: proto::leave_request::Action::Reconnect as i32,
        regions: None,
    };
    send_leave(socket, leave).await;
}

/// Sends `leave` and closes the socket.
async fn send_leave(mut socket: WebSocket, leave: proto::LeaveRequest) {
    use axum::extract::ws::Message as WsMessage;
    use prost::Message as _;
    let leave = proto::SignalResponse {
        message: Some(Msg::Leave(leave)),
    };
    let _ = socket
        .send(WsMessage::Binary(leave.encode_to_vec().into()))
        .await;
    let _ = socket.send(WsMessage::Close(None)).await;
}
