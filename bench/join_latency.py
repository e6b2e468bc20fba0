"""Join latency on loopback against a running ferrokit (or any LiveKit server).

Measures, over N joins:
  - WebSocket open -> JoinResponse (raw signal client, /rtc/v1 with a JoinRequest);
  - connect() start -> first decoded audio frame of an already published tone,
    with the official Python SDK (single peer connection).

Usage (from the interop venv):
  tests/interop/.venv/bin/python bench/join_latency.py --url ws://127.0.0.1:7880 --joins 20
"""

import argparse
import asyncio
import base64
import statistics
import time

import aiohttp
import numpy as np
from livekit import api, rtc
from livekit.protocol import rtc as proto_rtc


def token(key, secret, room, identity):
    return (
        api.AccessToken(key, secret)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


async def signal_join_ms(url, tok):
    jr = proto_rtc.JoinRequest()
    jr.connection_settings.auto_subscribe = True
    wrapped = proto_rtc.WrappedJoinRequest(join_request=jr.SerializeToString())
    param = base64.urlsafe_b64encode(wrapped.SerializeToString()).decode()
    async with aiohttp.ClientSession() as s:
        t0 = time.perf_counter()
        async with s.ws_connect(
            f"{url}/rtc/v1?join_request={param}", headers={"Authorization": f"Bearer {tok}"}
        ) as ws:
            t_open = time.perf_counter()
            msg = await asyncio.wait_for(ws.receive(), 5)
            t_join = time.perf_counter()
            resp = proto_rtc.SignalResponse()
            resp.ParseFromString(msg.data)
            assert resp.WhichOneof("message") == "join", resp
            leave = proto_rtc.SignalRequest(leave=proto_rtc.LeaveRequest())
            await ws.send_bytes(leave.SerializeToString())
    return (t_join - t_open) * 1000, (t_open - t0) * 1000


async def publish_tone(room):
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    t = np.arange(480) / 48000

    async def pump():
        n = 0
        while True:
            samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * (t + n * 0.01))).astype(np.int16)
            frame = rtc.AudioFrame(samples.tobytes(), 48000, 1, 480)
            await source.capture_frame(frame)
            n += 1

    return asyncio.create_task(pump())


async def first_media_ms(url, tok):
    room = rtc.Room()
    got = asyncio.get_running_loop().create_future()

    def on_sub(track, pub, part):
        async def read():
            async for ev in rtc.AudioStream(track):
                if np.abs(np.frombuffer(ev.frame.data, dtype=np.int16)).max() > 0:
                    if not got.done():
                        got.set_result(time.perf_counter())
                    return

        asyncio.ensure_future(read())

    room.on("track_subscribed", on_sub)
    t0 = time.perf_counter()
    await room.connect(url, tok)
    t_connected = time.perf_counter()
    t_media = await asyncio.wait_for(got, 10)
    await room.disconnect()
    return (t_connected - t0) * 1000, (t_media - t0) * 1000


def p50(xs):
    return statistics.median(xs)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="ws://127.0.0.1:7880")
    ap.add_argument("--key", default="devkey")
    ap.add_argument("--secret", default="secret")
    ap.add_argument("--joins", type=int, default=20)
    a = ap.parse_args()
    room_name = f"bench-{int(time.time())}"

    join_ms, open_ms = [], []
    for i in range(a.joins):
        j, o = await signal_join_ms(a.url, token(a.key, a.secret, room_name + "-sig", f"s{i}"))
        join_ms.append(j)
        open_ms.append(o)

    pub = rtc.Room()
    await pub.connect(a.url, token(a.key, a.secret, room_name, "publisher"))
    pump = await publish_tone(pub)
    connect_ms, media_ms = [], []
    for i in range(a.joins):
        c, m = await first_media_ms(a.url, token(a.key, a.secret, room_name, f"sub{i}"))
        connect_ms.append(c)
        media_ms.append(m)
    pump.cancel()
    await pub.disconnect()

    print(f"joins: {a.joins}")
    print(f"websocket handshake (ms)          p50 {p50(open_ms):7.2f}  max {max(open_ms):7.2f}")
    print(f"ws open -> JoinResponse (ms)      p50 {p50(join_ms):7.2f}  max {max(join_ms):7.2f}")
    print(f"SDK connect() (ms)                p50 {p50(connect_ms):7.2f}  max {max(connect_ms):7.2f}")
    print(f"connect start -> first audio (ms) p50 {p50(media_ms):7.2f}  max {max(media_ms):7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
