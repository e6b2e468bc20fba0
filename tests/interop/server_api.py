"""The server API (Twirp RoomService) through both official server SDKs, with
one interface for the tests, plus raw Twirp requests and the Node helpers.

  python: livekit.api.LiveKitAPI (livekit-api), protobuf bodies
          (Content-Type application/protobuf)
  node:   livekit-server-sdk RoomServiceClient via api_node/call.mjs, JSON
          bodies (Content-Type application/json;charset=UTF-8)

Both return the Python protobuf types (Room, ParticipantInfo, TrackInfo) and
raise ApiError on a Twirp error, so a test runs unchanged against either SDK.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import aiohttp
from google.protobuf import json_format
from google.protobuf.message import Message
from livekit import api

from helpers import API_KEY, API_SECRET

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "api_node"
NODE_TIMEOUT = 20.0  # one node process: startup + one request
HTTP_TIMEOUT = 10.0
SDKS = ["python", "node"]


@dataclass
class ApiError(Exception):
    """A Twirp error as the SDK reported it."""

    code: Optional[str]  # Twirp code: permission_denied, not_found, ...
    status: int  # HTTP status
    message: str

    def __str__(self) -> str:
        return f"ApiError(code={self.code}, status={self.status}, message={self.message!r})"


def node_available() -> Optional[str]:
    """None if the Node client can run, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "livekit-server-sdk").is_dir():
        return f"{NODE_DIR}/node_modules missing (run.sh runs npm ci there)"
    return None


async def run_node(script: str, *args: str, stdin: bytes = b"", env: Optional[dict] = None,
                   timeout: float = NODE_TIMEOUT) -> tuple[int, dict]:
    """Run api_node/<script> with args; return (exit code, its JSON stdout)."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / script), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})}, cwd=str(NODE_DIR),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"node {script} {' '.join(args[3:5])} did not finish within {timeout:.0f}s") from None
    text = out.decode().strip()
    try:
        return proc.returncode, json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        raise AssertionError(f"node {script}: not JSON on stdout: {text[:300]!r}; stderr: {err.decode()[:500]}")


def _parse(msg_type: type[Message], obj: dict) -> Message:
    return json_format.ParseDict(obj, msg_type(), ignore_unknown_fields=True)


class RoomApi:
    """The RoomService methods the tests use; see PythonRoomApi / NodeRoomApi."""

    sdk: str

    async def close(self) -> None:
        pass


class PythonRoomApi(RoomApi):
    sdk = "python"

    def __init__(self, url: str, key: str = API_KEY, secret: str = API_SECRET, token: Optional[str] = None):
        if token:
            self.lk = api.LiveKitAPI(url, token=token, failover=False)
        else:
            self.lk = api.LiveKitAPI(url, key, secret, failover=False)

    async def close(self) -> None:
        await self.lk.aclose()

    async def _call(self, coro):
        try:
            return await asyncio.wait_for(coro, HTTP_TIMEOUT + 5)
        except api.ServerError as e:
            raise ApiError(e.code, e.status, e.message) from None
        except asyncio.TimeoutError:
            raise AssertionError("livekit-api request timed out") from None

    async def create_room(self, name: str, *, empty_timeout: int = 0, departure_timeout: int = 0,
                          max_participants: int = 0, metadata: str = "") -> api.Room:
        return await self._call(self.lk.room.create_room(api.CreateRoomRequest(
            name=name, empty_timeout=empty_timeout, departure_timeout=departure_timeout,
            max_participants=max_participants, metadata=metadata)))

    async def list_rooms(self, names: Optional[list[str]] = None) -> list[api.Room]:
        res = await self._call(self.lk.room.list_rooms(api.ListRoomsRequest(names=names or [])))
        return list(res.rooms)

    async def delete_room(self, room: str) -> None:
        await self._call(self.lk.room.delete_room(api.DeleteRoomRequest(room=room)))

    async def update_room_metadata(self, room: str, metadata: str) -> api.Room:
        return await self._call(self.lk.room.update_room_metadata(
            api.UpdateRoomMetadataRequest(room=room, metadata=metadata)))

    async def list_participants(self, room: str) -> list[api.ParticipantInfo]:
        res = await self._call(self.lk.room.list_participants(api.ListParticipantsRequest(room=room)))
        return list(res.participants)

    async def get_participant(self, room: str, identity: str) -> api.ParticipantInfo:
        return await self._call(self.lk.room.get_participant(api.RoomParticipantIdentity(room=room, identity=identity)))

    async def remove_participant(self, room: str, identity: str) -> None:
        await self._call(self.lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity)))

    async def mute_published_track(self, room: str, identity: str, track_sid: str, muted: bool) -> api.TrackInfo:
        res = await self._call(self.lk.room.mute_published_track(api.MuteRoomTrackRequest(
            room=room, identity=identity, track_sid=track_sid, muted=muted)))
        return res.track

    async def update_participant(self, room: str, identity: str, *, metadata: Optional[str] = None,
                                 name: Optional[str] = None, attributes: Optional[dict[str, str]] = None,
                                 permission: Optional[dict[str, Any]] = None) -> api.ParticipantInfo:
        req = api.UpdateParticipantRequest(room=room, identity=identity, metadata=metadata or "", name=name or "",
                                           attributes=attributes or {})
        if permission is not None:
            req.permission.CopyFrom(api.ParticipantPermission(**permission))
        return await self._call(self.lk.room.update_participant(req))

    async def update_subscriptions(self, room: str, identity: str, track_sids: list[str], subscribe: bool) -> None:
        await self._call(self.lk.room.update_subscriptions(api.UpdateSubscriptionsRequest(
            room=room, identity=identity, track_sids=track_sids, subscribe=subscribe)))

    async def send_data(self, room: str, data: bytes, *, topic: Optional[str] = None,
                        destination_identities: Optional[list[str]] = None, reliable: bool = True) -> None:
        kind = api.DataPacket.Kind.RELIABLE if reliable else api.DataPacket.Kind.LOSSY
        req = api.SendDataRequest(room=room, data=data, kind=kind,
                                  destination_identities=destination_identities or [])
        if topic is not None:
            req.topic = topic
        await self._call(self.lk.room.send_data(req))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


class NodeRoomApi(RoomApi):
    sdk = "node"

    def __init__(self, url: str, key: str = API_KEY, secret: str = API_SECRET, token: Optional[str] = None):
        self.url = url.replace("ws://", "http://", 1)
        self.key, self.secret, self.token = key, secret, token

    async def _call(self, method: str, **args: Any) -> dict:
        env = {"LIVEKIT_TOKEN": self.token or ""}
        args = {k: v for k, v in args.items() if v is not None}
        code, out = await run_node("call.mjs", self.url, self.key, self.secret, method, json.dumps(args), env=env)
        err = out.get("error") if isinstance(out, dict) else None
        if code == 1 and err:
            raise ApiError(err.get("code"), int(err.get("status") or 0), err.get("message", ""))
        if code != 0:
            raise AssertionError(f"node call.mjs {method} failed (exit {code}): {out}")
        return out

    async def create_room(self, name: str, *, empty_timeout: int = 0, departure_timeout: int = 0,
                          max_participants: int = 0, metadata: str = "") -> api.Room:
        out = await self._call("CreateRoom", name=name, emptyTimeout=empty_timeout,
                               departureTimeout=departure_timeout, maxParticipants=max_participants,
                               metadata=metadata)
        return _parse(api.Room, out)

    async def list_rooms(self, names: Optional[list[str]] = None) -> list[api.Room]:
        out = await self._call("ListRooms", names=names or [])
        return list(_parse(api.ListRoomsResponse, out).rooms)

    async def delete_room(self, room: str) -> None:
        await self._call("DeleteRoom", room=room)

    async def update_room_metadata(self, room: str, metadata: str) -> api.Room:
        return _parse(api.Room, await self._call("UpdateRoomMetadata", room=room, metadata=metadata))

    async def list_participants(self, room: str) -> list[api.ParticipantInfo]:
        out = await self._call("ListParticipants", room=room)
        return list(_parse(api.ListParticipantsResponse, out).participants)

    async def get_participant(self, room: str, identity: str) -> api.ParticipantInfo:
        return _parse(api.ParticipantInfo, await self._call("GetParticipant", room=room, identity=identity))

    async def remove_participant(self, room: str, identity: str) -> None:
        await self._call("RemoveParticipant", room=room, identity=identity)

    async def mute_published_track(self, room: str, identity: str, track_sid: str, muted: bool) -> api.TrackInfo:
        out = await self._call("MutePublishedTrack", room=room, identity=identity, trackSid=track_sid, muted=muted)
        return _parse(api.MuteRoomTrackResponse, out).track

    async def update_participant(self, room: str, identity: str, *, metadata: Optional[str] = None,
                                 name: Optional[str] = None, attributes: Optional[dict[str, str]] = None,
                                 permission: Optional[dict[str, Any]] = None) -> api.ParticipantInfo:
        args: dict[str, Any] = {"room": room, "identity": identity}
        if metadata is not None:
            args["metadata"] = metadata
        if name is not None:
            args["name"] = name
        if attributes is not None:
            args["attributes"] = attributes
        if permission is not None:
            args["permission"] = {_camel(k): v for k, v in permission.items()}
        return _parse(api.ParticipantInfo, await self._call("UpdateParticipant", **args))

    async def update_subscriptions(self, room: str, identity: str, track_sids: list[str], subscribe: bool) -> None:
        await self._call("UpdateSubscriptions", room=room, identity=identity, trackSids=track_sids,
                         subscribe=subscribe)

    async def send_data(self, room: str, data: bytes, *, topic: Optional[str] = None,
                        destination_identities: Optional[list[str]] = None, reliable: bool = True) -> None:
        await self._call("SendData", room=room, data=base64.b64encode(data).decode(), topic=topic,
                         destinationIdentities=destination_identities or [], reliable=reliable)


def make_room_api(sdk: str, url: str, **kw: Any) -> RoomApi:
    """A RoomApi for sdk "python" or "node" (kw: key, secret, token)."""
    return {"python": PythonRoomApi, "node": NodeRoomApi}[sdk](url, **kw)


# ---------------------------------------------------------------- raw Twirp


async def twirp_raw(http_url: str, method: str, body: bytes, content_type: str,
                    token: Optional[str] = None) -> tuple[int, dict, str]:
    """POST a raw body to /twirp/livekit.RoomService/<method>; return
    (status, response headers with lower-case names, response text)."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{http_url}/twirp/livekit.RoomService/{method}", data=body, headers=headers,
                          timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, (await r.read()).decode("utf-8", "replace")


def admin_token(room: str = "", **grants: Any) -> str:
    """A server-API token with the given VideoGrants (the SDK wants an
    identity when room_join is set)."""
    video = api.VideoGrants(room=room, **grants)
    return api.AccessToken(API_KEY, API_SECRET).with_identity("api-test").with_grants(video).to_jwt()
