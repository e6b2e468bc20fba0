//! The signal connection: a WebSocket carrying binary protobuf
//! `SignalRequest` (client to server) and `SignalResponse` (server to
//! client) frames. The token goes in `Authorization: Bearer`.

use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Msg;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ClientError;

/// The signal WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer of the signal WebSocket, bytes: tungstenite's default (128
/// KiB) is zeroed before every read, a cost a load test of hundreds of
/// clients on one machine notices; longer messages take several reads.
const READ_BUFFER_BYTES: usize = 16 << 10;

/// Opens the signal WebSocket at `url` with `token`. A refused upgrade
/// becomes [`ClientError::Refused`] with the server's status and reason.
pub(crate) async fn connect(url: &str, token: &str) -> Result<Ws, ClientError> {
    let mut request = url.into_client_request()?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ClientError::Protocol("token is not a valid header value".into()))?;
    request.headers_mut().insert(header::AUTHORIZATION, auth);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => {
            let status = resp.status().as_u16();
            let reason = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .unwrap_or_default();
            Err(ClientError::Refused { status, reason })
        }
        Err(e) => Err(e.into()),
    }
}

/// Encodes one request as a binary frame.
pub(crate) fn frame(msg: Req) -> WsMessage {
    let req = proto::SignalRequest { message: Some(msg) };
    WsMessage::Binary(req.encode_to_vec().into())
}

/// What a received frame means.
pub(crate) enum Incoming {
    /// A server message.
    Message(Box<Msg>),
    /// Nothing to act on (WebSocket ping/pong, empty message).
    Nothing,
    /// The connection ended (close frame, error or end of stream).
    Closed(String),
}

/// Reads a frame from the stream's `next()` result.
pub(crate) fn decode(frame: Option<Result<WsMessage, WsError>>) -> Result<Incoming, ClientError> {
    match frame {
        Some(Ok(WsMessage::Binary(b))) => {
            let resp = proto::SignalResponse::decode(b.as_ref())?;
            Ok(resp
                .message
                .map_or(Incoming::Nothing, |m| Incoming::Message(Box::new(m))))
        }
        Some(Ok(WsMessage::Close(c))) => Ok(Incoming::Closed(
            c.map(|c| c.reason.to_string())
                .unwrap_or_else(|| "closed by server".into()),
        )),
        Some(Ok(WsMessage::Text(_))) => Err(ClientError::Protocol(
            "text signal frame (only binary protobuf is spoken)".into(),
        )),
        Some(Ok(_)) => Ok(Incoming::Nothing),
        Some(Err(e)) => Ok(Incoming::Closed(e.to_string())),
        None => Ok(Incoming::Closed("connection ended".into())),
    }
}

/// Waits for the first server message, which must be `join`.
pub(crate) async fn await_join(ws: &mut Ws) -> Result<proto::JoinResponse, ClientError> {
    loop {
        match decode(ws.next().await)? {
            Incoming::Message(m) => match *m {
                Msg::Join(j) => return Ok(j),
                Msg::Leave(l) => {
                    let reason = proto::DisconnectReason::try_from(l.reason)
                        .map(|r| r.as_str_name().to_string())
                        .unwrap_or_else(|_| l.reason.to_string());
                    return Err(ClientError::Disconnected(format!(
                        "leave before join: {reason}"
                    )));
                }
                other => {
                    return Err(ClientError::Protocol(format!(
                        "first signal message is not join: {other:?}"
                    )))
                }
            },
            Incoming::Nothing => {}
            Incoming::Closed(why) => return Err(ClientError::Disconnected(why)),
        }
    }
}

/// Sends queued requests and flushes.
pub(crate) async fn send_all(ws: &mut Ws, outbox: &mut Vec<Req>) -> Result<(), ClientError> {
    for msg in outbox.drain(..) {
        ws.feed(frame(msg)).await?;
    }
    ws.flush().await?;
    Ok(())
}
