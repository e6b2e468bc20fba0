"""Shared helpers for the interop suite: tokens, SDK clients with event logs,
bounded event waiting, and synthetic media (tone / solid colour) with analysis.

Every wait here is bounded; a timeout becomes an AssertionError that says what
was awaited and what was seen instead.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

import jwt
import numpy as np
from livekit import api, rtc

log = logging.getLogger("interop")

API_KEY = "devkey"
API_SECRET = "secret"

CONNECT_TIMEOUT = 20.0  # one room.connect, all SDK retries included
EVENT_TIMEOUT = 15.0  # default for waiting on one room event


# ---------------------------------------------------------------- tokens


def make_token(
    identity: str,
    room: str,
    *,
    key: str = API_KEY,
    secret: str = API_SECRET,
    name: Optional[str] = None,
    ttl: Optional[datetime.timedelta] = None,
    **grants: Any,
) -> str:
    """Mint a JWT with livekit.api.AccessToken. `grants` are VideoGrants fields
    (snake_case: can_publish=False, can_publish_data=False, hidden=True, ...);
    room_join=True and room=<room> are the defaults."""
    video = api.VideoGrants(**{"room_join": True, "room": room, **grants})
    tok = api.AccessToken(key, secret).with_identity(identity).with_grants(video)
    if name is not None:
        tok = tok.with_name(name)
    if ttl is not None:
        tok = tok.with_ttl(ttl)
    return tok.to_jwt()


def make_expired_token(identity: str, room: str, *, key: str = API_KEY, secret: str = API_SECRET) -> str:
    """A correctly signed token whose exp is an hour in the past (well beyond
    any clock-skew allowance) and whose nbf is before that."""
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    claims = {
        "iss": key,
        "sub": identity,
        "nbf": now - 7200,
        "exp": now - 3600,
        "video": {"roomJoin": True, "room": room},
    }
    return jwt.encode(claims, secret, algorithm="HS256")


# ---------------------------------------------------------------- events

# Room events recorded by every Client (see EventLog).
RECORDED_EVENTS = (
    "participant_connected",
    "participant_disconnected",
    "participant_active",
    "track_published",
    "track_unpublished",
    "track_subscribed",
    "track_unsubscribed",
    "track_subscription_failed",
    "track_muted",
    "track_unmuted",
    "local_track_published",
    "local_track_subscribed",
    "data_received",
    "room_metadata_changed",
    "participant_metadata_changed",
    "participant_name_changed",
    "participant_attributes_changed",
    "participant_permissions_changed",
    "local_track_unpublished",
    "connection_state_changed",
    "disconnected",
    "reconnecting",
    "reconnected",
    "active_speakers_changed",
    "connection_quality_changed",
)


class EventLog:
    """Records room events from the moment the Room is created (handlers are
    attached before connect) so nothing is missed between an action and the
    wait for its effect. `wait` looks at the history first, then for new events.
    Use `mark()` + `since=` to wait for an event that happens after a point."""

    def __init__(self, room: rtc.Room, label: str) -> None:
        self.label = label
        self.entries: list[tuple[str, tuple]] = []
        self._wakeups: list[asyncio.Future] = []
        for name in RECORDED_EVENTS:
            room.on(name, functools.partial(self._record, name))

    def _record(self, name: str, *args: Any) -> None:
        self.entries.append((name, args))
        wakeups, self._wakeups = self._wakeups, []
        for fut in wakeups:
            if not fut.done():
                fut.set_result(None)

    def mark(self) -> int:
        return len(self.entries)

    def matching(self, name: str, pred: Optional[Callable[..., bool]] = None, *, since: int = 0) -> list[tuple]:
        return [args for n, args in self.entries[since:] if n == name and (pred is None or pred(*args))]

    async def wait(
        self,
        name: str,
        pred: Optional[Callable[..., bool]] = None,
        *,
        since: int = 0,
        timeout: float = EVENT_TIMEOUT,
        what: str = "",
    ) -> tuple:
        """Wait (bounded) for an event `name` whose args satisfy `pred`;
        returns its args tuple."""
        loop = asyncio.get_running_loop()

        async def _until_found() -> tuple:
            while True:
                hits = self.matching(name, pred, since=since)
                if hits:
                    return hits[0]
                fut = loop.create_future()
                self._wakeups.append(fut)
                await fut

        try:
            return await asyncio.wait_for(_until_found(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"[{self.label}] no '{name}' event{' (' + what + ')' if what else ''} within "
                f"{timeout:.0f}s; events seen since mark: {self.summary(since)}"
            ) from None

    def summary(self, since: int = 0) -> str:
        out = []
        for n, args in self.entries[since:]:
            desc = ", ".join(_describe(a) for a in args)
            out.append(f"{n}({desc})")
        return "[" + "; ".join(out[-25:]) + "]" if out else "[]"


def _describe(obj: Any) -> str:
    if isinstance(obj, rtc.Participant):
        return f"participant {obj.identity}"
    if isinstance(obj, rtc.TrackPublication):
        return f"publication {obj.sid}"
    if isinstance(obj, rtc.Track):
        return f"track {obj.sid}"
    if isinstance(obj, rtc.DataPacket):
        sender = obj.participant.identity if obj.participant else None
        return f"data from={sender} topic={obj.topic!r} len={len(obj.data)}"
    return repr(obj)[:60]


async def bounded(aw: Awaitable, timeout: float, what: str) -> Any:
    """await `aw` at most `timeout` seconds; a timeout is a test failure."""
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f}s: {what}") from None


# ---------------------------------------------------------------- clients


@dataclass
class Client:
    """One SDK participant: the Room, its identity and its event log."""

    identity: str
    room: rtc.Room
    events: EventLog
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def lp(self) -> rtc.LocalParticipant:
        return self.room.local_participant

    async def wait_participant(self, identity: str, timeout: float = EVENT_TIMEOUT) -> rtc.RemoteParticipant:
        """The remote participant `identity`, once this client knows it."""
        if identity not in self.room.remote_participants:
            await self.events.wait(
                "participant_connected", lambda p: p.identity == identity, timeout=timeout, what=identity
            )
        return self.room.remote_participants[identity]

    async def wait_active(self, identity: str, timeout: float = EVENT_TIMEOUT) -> rtc.RemoteParticipant:
        """Wait until `identity` is ACTIVE (media connected, ready for data)."""
        p = await self.wait_participant(identity, timeout)
        if p.state != rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE:
            await self.events.wait(
                "participant_active",
                lambda rp: rp.identity == identity,
                timeout=timeout,
                what=f"{identity} becoming ACTIVE (state now {p.state})",
            )
        return p

    async def wait_track_subscribed(
        self, from_identity: str, kind: int, *, since: int = 0, timeout: float = EVENT_TIMEOUT
    ) -> tuple[rtc.RemoteTrack, rtc.RemoteTrackPublication]:
        track, pub, _ = await self.events.wait(
            "track_subscribed",
            lambda t, pub, p: p.identity == from_identity and t.kind == kind,
            since=since,
            timeout=timeout,
            what=f"{_KIND_NAMES.get(kind, kind)} track of {from_identity}",
        )
        return track, pub


_KIND_NAMES = {rtc.TrackKind.KIND_AUDIO: "audio", rtc.TrackKind.KIND_VIDEO: "video"}


def room_options(single_pc: bool, **kw: Any) -> rtc.RoomOptions:
    """RoomOptions for a connection mode. single_peer_connection=True asks the
    SDK for /rtc/v1 (one PC); False for /rtc (publisher + subscriber PCs).
    Left as None the SDK 1.2.0 behaves like True (tries /rtc/v1 first)."""
    return rtc.RoomOptions(single_peer_connection=single_pc, **kw)


async def assert_pc_mode(client: Client, single_pc: bool) -> None:
    """Check from the SDK's RTC stats that the connection really is in the
    requested mode (an SDK asked for /rtc/v1 silently falls back to /rtc on a
    404): single PC has no subscriber PC; dual has a connected one."""
    stats = await bounded(client.room.get_rtc_stats(), 10, f"{client.identity} get_rtc_stats")
    sub_kinds = {s.WhichOneof("stats") for s in stats.subscriber_stats}
    if single_pc:
        assert not sub_kinds, f"single PC requested but a subscriber PC exists: {sorted(sub_kinds)}"
    else:
        assert "transport" in sub_kinds, f"dual PC requested but no subscriber transport: {sorted(sub_kinds)}"


async def expect_publish_refused(client: "Client", timeout: float = EVENT_TIMEOUT) -> None:
    """Publishing an audio track must fail with an SDK error. The SDK (1.2.0)
    ignores the server's request_response NOT_ALLOWED and fails on its own
    10 s publication timeout ("no response received from the server"), so
    this takes ~10 s; a hang until `timeout` is a failure."""
    try:
        await TonePublisher().publish(client, timeout=timeout)
    except PublishTimeout:
        raise AssertionError(f"[{client.identity}] publish_track neither failed nor succeeded "
                             f"within {timeout:.0f}s") from None
    except Exception as e:
        log.info("publish refused as expected: %r", e)
        return
    raise AssertionError(f"[{client.identity}] publish_track succeeded without permission to publish")


class PublishTimeout(AssertionError):
    """publish_track did not complete in time."""


class ClientPool:
    """Connects SDK clients to the test server and disconnects them all (bounded)
    at teardown."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.clients: list[Client] = []

    async def connect(
        self,
        identity: str,
        room_name: str,
        *,
        single_pc: bool = True,
        token: Optional[str] = None,
        timeout: float = CONNECT_TIMEOUT,
        **options: Any,
    ) -> Client:
        room = rtc.Room()
        client = Client(identity, room, EventLog(room, identity))
        token = token or make_token(identity, room_name)
        await bounded(
            room.connect(self.url, token, room_options(single_pc, **options)),
            timeout,
            f"{identity} connecting to {room_name} (single_pc={single_pc})",
        )
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in reversed(self.clients):
            for cleanup in reversed(client.cleanups):
                try:
                    await asyncio.wait_for(cleanup(), 5)
                except Exception as e:  # cleanup must not mask the test result
                    log.warning("cleanup of %s failed: %r", client.identity, e)
            try:
                await asyncio.wait_for(client.room.disconnect(), 10)
            except Exception as e:
                log.warning("disconnect of %s failed: %r", client.identity, e)
        self.clients.clear()


# ---------------------------------------------------------------- audio

SAMPLE_RATE = 48000
FRAME_MS = 10
SAMPLES_PER_FRAME = SAMPLE_RATE * FRAME_MS // 1000
SILENCE_PEAK = 500  # int16 peak below which a frame counts as silent


class TonePublisher:
    """Publishes a sine tone from rtc.AudioSource(48000, 1), pushing 10 ms
    frames at real-time pace from a background task."""

    def __init__(self, freq: float = 440.0, amplitude: float = 0.5) -> None:
        self.freq = freq
        self.amplitude = amplitude
        self.source = rtc.AudioSource(SAMPLE_RATE, 1)
        self.track = rtc.LocalAudioTrack.create_audio_track("tone", self.source)
        self.publication: Optional[rtc.LocalTrackPublication] = None
        self._task: Optional[asyncio.Task] = None
        self.frames_sent = 0

    async def publish(self, client: Client, timeout: float = EVENT_TIMEOUT) -> rtc.LocalTrackPublication:
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        self._task = asyncio.create_task(self._pump())
        client.cleanups.append(self.stop)
        try:
            self.publication = await asyncio.wait_for(client.lp.publish_track(self.track, opts), timeout)
        except asyncio.TimeoutError:
            raise PublishTimeout(f"timed out after {timeout:.0f}s: {client.identity} publishing audio") from None
        return self.publication

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        step = 2 * math.pi * self.freq / SAMPLE_RATE
        start = loop.time()
        n = 0
        while True:
            idx = np.arange(n * SAMPLES_PER_FRAME, (n + 1) * SAMPLES_PER_FRAME)
            pcm = (np.sin(idx * step) * self.amplitude * 32767).astype(np.int16)
            frame = rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, SAMPLES_PER_FRAME)
            await self.source.capture_frame(frame)
            n += 1
            self.frames_sent = n
            # real-time pacing: frame n is due at start + n * 10 ms
            delay = start + n * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.source.aclose()


async def receive_tone(track: rtc.RemoteTrack, *, seconds: float = 1.5, timeout: float = 20.0) -> np.ndarray:
    """Read the track through rtc.AudioStream; once non-silent audio arrives,
    skip 100 ms of onset and return the following `seconds` of samples."""
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    stats = {"frames": 0, "peak": 0}
    want = int(seconds * SAMPLE_RATE)
    skip = int(0.1 * SAMPLE_RATE)

    async def _collect() -> np.ndarray:
        chunks: list[np.ndarray] = []
        got = 0
        skipped = 0
        started = False
        async for ev in stream:
            samples = np.frombuffer(ev.frame.data.cast("B"), dtype=np.int16)
            stats["frames"] += 1
            peak = int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0
            stats["peak"] = max(stats["peak"], peak)
            if not started:
                if peak < SILENCE_PEAK:
                    continue
                started = True
            if skipped < skip:  # drop the onset (decoder / jitter buffer ramp-up)
                skipped += samples.size
                continue
            chunks.append(samples)
            got += samples.size
            if got >= want:
                return np.concatenate(chunks)[:want]
        raise AssertionError(f"audio stream ended early ({stats})")

    try:
        return await asyncio.wait_for(_collect(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"no {seconds}s of non-silent audio within {timeout:.0f}s "
            f"(frames received: {stats['frames']}, max |sample|: {stats['peak']})"
        ) from None
    finally:
        await stream.aclose()


async def audio_packets_received(client: "Client") -> int:
    """Audio RTP packets the client has received, from its RTC stats."""
    stats = await bounded(client.room.get_rtc_stats(), 10, f"{client.identity} get_rtc_stats")
    return sum(
        st.inbound_rtp.received.packets_received
        for st in [*stats.publisher_stats, *stats.subscriber_stats]
        if st.WhichOneof("stats") == "inbound_rtp" and st.inbound_rtp.stream.kind == "audio"
    )


async def wait_audio_stopped(client: "Client", *, quiet: float = 0.6, timeout: float = 10.0) -> None:
    """Wait until the client's received audio packet count stops growing for
    `quiet` seconds: the server has stopped forwarding to it. Polls the stats
    every 100 ms; raises after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = await audio_packets_received(client)
    still_since = loop.time()
    while loop.time() - still_since < quiet:
        if loop.time() > deadline:
            raise AssertionError(f"[{client.identity}] audio still arriving {timeout:.0f}s after unsubscribing")
        await asyncio.sleep(0.1)
        now = await audio_packets_received(client)
        if now > last:
            still_since = loop.time()
        last = now


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Frequency (Hz) of the strongest FFT bin above 50 Hz, refined by
    parabolic interpolation."""
    x = samples.astype(np.float64)
    x -= x.mean()
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    lo = int(50 * x.size / rate)
    spec[:lo] = 0
    k = int(np.argmax(spec))
    if 0 < k < spec.size - 1:
        a, b, c = spec[k - 1], spec[k], spec[k + 1]
        denom = a - 2 * b + c
        k = k + (0.5 * (a - c) / denom if denom else 0.0)
    return k * rate / x.size


# ---------------------------------------------------------------- video

VIDEO_W, VIDEO_H = 320, 240
RED = (255, 0, 0)


class SolidVideoPublisher:
    """Publishes rtc.VideoSource(w, h) filled with one RGBA colour at `fps`."""

    def __init__(self, rgb: tuple[int, int, int] = RED, w: int = VIDEO_W, h: int = VIDEO_H, fps: int = 20) -> None:
        self.w, self.h, self.fps = w, h, fps
        self.source = rtc.VideoSource(w, h)
        self.track = rtc.LocalVideoTrack.create_video_track("solid", self.source)
        pixel = bytes((*rgb, 255))
        self.frame = rtc.VideoFrame(w, h, rtc.VideoBufferType.RGBA, pixel * (w * h))
        self._task: Optional[asyncio.Task] = None

    async def publish(self, client: Client) -> rtc.LocalTrackPublication:
        # no simulcast: the subscriber must get exactly the size sent
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=False)
        self._task = asyncio.create_task(self._pump())
        client.cleanups.append(self.stop)
        return await bounded(
            client.lp.publish_track(self.track, opts), EVENT_TIMEOUT, f"{client.identity} publishing video"
        )

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            self.source.capture_frame(self.frame, timestamp_us=int(n * 1e6 / self.fps))
            n += 1
            delay = start + n / self.fps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.source.aclose()


async def receive_video_frame(track: rtc.RemoteTrack, *, skip: int = 5, timeout: float = 20.0) -> rtc.VideoFrame:
    """Read the track through rtc.VideoStream and return the (skip+1)-th frame
    converted to RGBA."""
    stream = rtc.VideoStream(track)
    seen = {"frames": 0}

    async def _nth() -> rtc.VideoFrame:
        async for ev in stream:
            seen["frames"] += 1
            if seen["frames"] > skip:
                return ev.frame.convert(rtc.VideoBufferType.RGBA)
        raise AssertionError(f"video stream ended after {seen['frames']} frames")

    try:
        return await asyncio.wait_for(_nth(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"got only {seen['frames']} video frames within {timeout:.0f}s (wanted {skip + 1})") from None
    finally:
        await stream.aclose()


def mean_rgb(frame: rtc.VideoFrame) -> tuple[float, float, float]:
    arr = np.frombuffer(frame.data, dtype=np.uint8).reshape(frame.height, frame.width, 4)
    m = arr[:, :, :3].reshape(-1, 3).mean(axis=0)
    return float(m[0]), float(m[1]), float(m[2])
