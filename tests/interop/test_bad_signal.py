"""Malformed signal traffic on an open session: each gets a clear answer
(`request_response` or `leave` with a reason) and the server keeps serving.
Driven over a raw WebSocket with LiveKit's protobuf types, since the SDK never
sends such frames."""

import asyncio
import base64

import aiohttp
from livekit.protocol import models as proto_models
from livekit.protocol import rtc as proto_rtc

from helpers import bounded, make_token

WAIT = 10.0


class RawSignal:
    """A bare /rtc/v1 signal connection."""

    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, server, room: str, identity: str, **grants):
        jr = proto_rtc.JoinRequest()
        jr.connection_settings.auto_subscribe = True
        wrapped = proto_rtc.WrappedJoinRequest(join_request=jr.SerializeToString())
        param = base64.urlsafe_b64encode(wrapped.SerializeToString()).decode()
        token = make_token(identity, room, **grants)
        ws = await bounded(
            # No autoping: reading never writes, even when the server closes.
            session.ws_connect(f"{server.url}/rtc/v1?join_request={param}",
                               headers={"Authorization": f"Bearer {token}"}, autoping=False),
            WAIT, "raw signal connect")
        raw = cls(ws)
        first = await raw.next()
        assert first.WhichOneof("message") == "join", first
        return raw

    async def next(self) -> proto_rtc.SignalResponse:
        msg = await bounded(self.ws.receive(), WAIT, "signal response")
        while msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
            msg = await bounded(self.ws.receive(), WAIT, "signal response")
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        resp = proto_rtc.SignalResponse()
        resp.ParseFromString(msg.data)
        return resp

    async def wait_for(self, kind: str) -> proto_rtc.SignalResponse:
        async def loop():
            while True:
                resp = await self.next()
                if resp.WhichOneof("message") == kind:
                    return resp
        return await bounded(loop(), WAIT, f"signal response {kind}")

    async def send(self, req: proto_rtc.SignalRequest) -> None:
        await self.ws.send_bytes(req.SerializeToString())


async def test_malformed_frame_gets_request_response(server, room_name):
    async with aiohttp.ClientSession() as s:
        raw = await RawSignal.open(s, server, room_name, "garbler")
        await raw.ws.send_bytes(b"\xff\xff\xff\xff not protobuf")
        resp = await raw.wait_for("request_response")
        assert resp.request_response.reason == proto_rtc.RequestResponse.INVALID_REQUEST
        assert "malformed" in resp.request_response.message
        # The session still works: ping_req -> pong_resp.
        await raw.send(proto_rtc.SignalRequest(ping_req=proto_rtc.Ping(timestamp=1234)))
        pong = await raw.wait_for("pong_resp")
        assert pong.pong_resp.last_ping_timestamp == 1234


async def test_forbidden_track_is_refused(server, room_name):
    async with aiohttp.ClientSession() as s:
        raw = await RawSignal.open(s, server, room_name, "camera-only", can_publish_sources=["camera"])
        req = proto_rtc.AddTrackRequest(cid="mic-1", type=proto_models.AUDIO,
                                        source=proto_models.MICROPHONE, name="mic")
        await raw.send(proto_rtc.SignalRequest(add_track=req))
        resp = await raw.wait_for("request_response")
        assert resp.request_response.reason == proto_rtc.RequestResponse.NOT_ALLOWED
        assert resp.request_response.add_track.cid == "mic-1"
        # A camera track is accepted.
        ok = proto_rtc.AddTrackRequest(cid="cam-1", type=proto_models.VIDEO,
                                       source=proto_models.CAMERA, name="cam")
        await raw.send(proto_rtc.SignalRequest(add_track=ok))
        published = await raw.wait_for("track_published")
        assert published.track_published.cid == "cam-1"
        assert published.track_published.track.sid.startswith("TR_")


async def test_unusable_sdp_gets_leave_and_others_unaffected(server, room_name):
    async with aiohttp.ClientSession() as s:
        bystander = await RawSignal.open(s, server, room_name, "bystander")
        bad = await RawSignal.open(s, server, room_name, "bad-sdp")
        offer = proto_rtc.SessionDescription(type="offer", sdp="this is not sdp", id=1)
        await bad.send(proto_rtc.SignalRequest(offer=offer))
        leave = await bad.wait_for("leave")
        assert leave.leave.action == proto_rtc.LeaveRequest.DISCONNECT
        assert leave.leave.reason == proto_models.STATE_MISMATCH
        # The bystander sees the bad participant leave and keeps its session.
        update = await bystander.wait_for("update")
        while not any(p.identity == "bad-sdp" and p.state == proto_models.ParticipantInfo.DISCONNECTED
                      for p in update.update.participants):
            update = await bystander.wait_for("update")
        await bystander.send(proto_rtc.SignalRequest(ping_req=proto_rtc.Ping(timestamp=7)))
        assert (await bystander.wait_for("pong_resp")).pong_resp.last_ping_timestamp == 7
