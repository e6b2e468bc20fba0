"""Bad tokens and malformed requests are refused with the right HTTP status,
and do not disturb the server for well-behaved clients. Not mode-parametrised
(clients use the SDK default path, single peer connection)."""

import asyncio
import base64
import os
from urllib.parse import quote

import aiohttp
import pytest
from livekit import rtc

from helpers import bounded, make_expired_token, make_token

HTTP_TIMEOUT = 10.0
SDK_REFUSAL_TIMEOUT = 45.0  # the SDK retries a refused join a few times


async def http_get(url: str, **kw) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT), **kw) as r:
            return r.status, await r.text(), dict(r.headers)


async def ws_handshake_status(url: str, **kw) -> int:
    """Try a WebSocket upgrade; return the HTTP status of a refused handshake
    (101 if the upgrade was accepted)."""
    async with aiohttp.ClientSession() as s:
        try:
            ws = await bounded(s.ws_connect(url, **kw), HTTP_TIMEOUT, f"ws handshake {url[:80]}")
        except aiohttp.WSServerHandshakeError as e:
            return e.status
        await ws.close()
        return 101


def validate_url(server, token: str) -> str:
    return f"{server.http_url}/rtc/validate?access_token={quote(token)}"


async def expect_sdk_refused(pool, identity: str, room_name: str, token: str) -> None:
    with pytest.raises(rtc.ConnectError):
        await pool.connect(identity, room_name, token=token, timeout=SDK_REFUSAL_TIMEOUT, connect_timeout=5)


async def test_wrong_secret(server, pool, room_name):
    good = make_token("mallory", room_name)
    status, body, headers = await http_get(validate_url(server, good))
    assert status == 200, f"control: good token refused by validate: {status} {body!r}"
    assert body.strip() == "success"

    bad = make_token("mallory", room_name, secret="not-the-secret")
    status, body, headers = await http_get(validate_url(server, bad))
    assert status == 401, f"validate with wrong secret: {status} {body!r}"
    assert headers.get("Access-Control-Allow-Origin") == "*"

    await expect_sdk_refused(pool, "mallory", room_name, bad)


async def test_expired_token(server, pool, room_name):
    expired = make_expired_token("late", room_name)
    status, body, _ = await http_get(validate_url(server, expired))
    assert status == 401, f"validate with expired token: {status} {body!r}"
    await expect_sdk_refused(pool, "late", room_name, expired)


async def test_v1_without_join_request(server, room_name):
    token = make_token("nojoin", room_name)
    status = await ws_handshake_status(f"{server.url}/rtc/v1", headers={"Authorization": f"Bearer {token}"})
    assert status == 400


async def test_server_undisturbed_by_bad_clients(server, pool, room_name):
    good = make_token("ghost", room_name)
    auth = {"Authorization": f"Bearer {good}"}

    # refused handshakes: wrong secret, join_request not base64, join_request not a protobuf
    bad = make_token("mallory", room_name, secret="not-the-secret")
    assert await ws_handshake_status(f"{server.url}/rtc?access_token={quote(bad)}") == 401
    assert await ws_handshake_status(f"{server.url}/rtc", headers={"Authorization": f"Bearer {bad}"}) == 401
    for junk in ("%%%not-base64%%%", base64.urlsafe_b64encode(os.urandom(64)).decode()):
        status = await ws_handshake_status(f"{server.url}/rtc/v1?join_request={quote(junk)}", headers=auth)
        assert 400 <= status < 500, f"join_request={junk!r}: handshake status {status}"

    # an accepted client that sends garbage frames and drops the socket without
    # leaving (the session closes the TCP connection; no close frame is sent)
    async with aiohttp.ClientSession() as s:
        ws = await bounded(s.ws_connect(f"{server.url}/rtc?protocol=16&auto_subscribe=1", headers=auth),
                           HTTP_TIMEOUT, "ghost handshake")
        for frame in (os.urandom(200), b"\x0a\xff\xff\xff\xff\x0f", b""):
            await ws.send_bytes(frame)
        await ws.send_str("{not json")

    # raw TCP garbage instead of HTTP
    reader, writer = await bounded(asyncio.open_connection(*server.http_url[len("http://"):].split(":")),
                                   HTTP_TIMEOUT, "tcp connect")
    writer.write(b"\x16\x03\x01\x00\xffGARBAGE\r\n\r\n")
    await writer.drain()
    writer.close()

    # the server still serves a good pair in the same room
    status, body, _ = await http_get(server.http_url + "/")
    assert (status, body.strip()) == (200, "OK")
    alice = await pool.connect("alice", room_name)
    bob = await pool.connect("bob", room_name)
    await alice.wait_active("bob")
    await bob.wait_active("alice")
    for tx, rx in ((alice, bob), (bob, alice)):
        payload = f"still-alive-from-{tx.identity}".encode()
        await bounded(tx.lp.publish_data(payload, topic="check"), 10, "publish_data")
        (pkt,) = await rx.events.wait("data_received", lambda p: p.data == payload)
        assert pkt.participant is not None and pkt.participant.identity == tx.identity
