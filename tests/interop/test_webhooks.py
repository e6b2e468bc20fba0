"""Webhooks: the server POSTs signed WebhookEvents to the URLs of its config
file (the session's WebhookSink, see conftest.py). Each event of a scenario
arrives once, in order, and verifies with the SDKs' WebhookReceiver (Python,
and Node's for one event); a receiver answering 500 gets the event again."""

import time
import uuid
from collections import Counter

import aiohttp
import pytest
from livekit import api, rtc
from livekit.protocol import rtc as proto_rtc

from helpers import API_KEY, API_SECRET, TonePublisher, bounded
from test_bad_signal import RawSignal
from server_api import PythonRoomApi, node_available, run_node
from webhook_sink import FLAKY_MARK, Delivery

AUDIO = rtc.TrackKind.KIND_AUDIO
ROOM_FINISHED_TIMEOUT = 20.0
RECEIVER = api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET))


@pytest.fixture
def sink(server):
    if server.webhooks is None:
        pytest.skip("external server (FERROKIT_URL): its webhooks do not come to this suite")
    return server.webhooks


@pytest.fixture
async def lkapi(server):
    client = PythonRoomApi(server.http_url)
    yield client
    await client.close()


async def drained(sink, lkapi) -> None:
    """Wait until every event queued so far has been delivered, retries
    included: each URL's deliveries are in order, so once a fresh barrier
    room's room_started reaches both URLs, nothing older is still coming."""
    barrier = f"barrier-{uuid.uuid4().hex[:8]}"
    await lkapi.create_room(barrier, empty_timeout=30)
    for path in ("/hook", "/flaky"):
        await sink.wait(is_event(barrier, "room_started"), path=path, what=f"barrier {barrier} on {path}")
    await lkapi.delete_room(barrier)


def verify(d: Delivery) -> api.WebhookEvent:
    """Check a delivery as a LiveKit webhook consumer would: content type,
    then WebhookReceiver.receive (JWT signature and body sha256)."""
    assert d.headers.get("content-type") == "application/webhook+json", d.headers.get("content-type")
    auth = d.headers.get("authorization")
    assert auth, f"no Authorization header on {d.describe()}"
    try:
        return RECEIVER.receive(d.text, auth)
    except Exception as e:
        raise AssertionError(f"WebhookReceiver refused {d.describe()}: {e!r} (Authorization: {auth[:40]}...)")


def key(e: api.WebhookEvent) -> tuple[str, str, str]:
    return e.event, e.participant.identity, e.track.sid


def is_event(room: str, event: str, identity: str = ""):
    def pred(d: Delivery) -> bool:
        j = d.json
        return (d.room_name == room and j.get("event") == event
                and (not identity or (j.get("participant") or {}).get("identity") == identity))
    return pred


async def test_webhook_scenario(server, sink, lkapi, pool, room_name):
    room = await lkapi.create_room(room_name, empty_timeout=1, departure_timeout=1)
    alice = await pool.connect("alice", room_name)
    pub = await TonePublisher().publish(alice)
    bob = await pool.connect("bob", room_name)
    await bob.wait_track_subscribed("alice", AUDIO)

    await bounded(alice.lp.unpublish_track(pub.sid), 10, "alice unpublishing")
    await bob.events.wait("track_unpublished", lambda p, part: p.sid == pub.sid, what="alice's track unpublished")
    await bounded(alice.room.disconnect(), 10, "alice leaving")
    await bob.events.wait("participant_disconnected", lambda p: p.identity == "alice")
    await bounded(bob.room.disconnect(), 10, "bob leaving")

    await sink.wait(is_event(room_name, "room_finished"), timeout=ROOM_FINISHED_TIMEOUT,
                    what=f"room_finished of {room_name} (empty/departure timeout 1 s)")
    await drained(sink, lkapi)
    deliveries = sink.for_room(room_name)
    events = [verify(d) for d in deliveries]
    seen = [key(e) for e in events]

    expected = [
        ("room_started", "", ""),
        ("participant_joined", "alice", ""),
        ("participant_joined", "bob", ""),
        ("track_published", "alice", pub.sid),
        ("track_unpublished", "alice", pub.sid),
        ("participant_left", "alice", ""),
        ("participant_left", "bob", ""),
        ("room_finished", "", ""),
    ]
    assert Counter(seen) == Counter(expected), f"events (in arrival order): {seen}"

    # order of arrival
    pos = {k: seen.index(k) for k in expected}
    assert seen[0] == ("room_started", "", ""), seen
    assert seen[-1] == ("room_finished", "", ""), seen
    assert (pos[("participant_joined", "alice", "")] < pos[("track_published", "alice", pub.sid)]
            < pos[("track_unpublished", "alice", pub.sid)] < pos[("participant_left", "alice", "")]), seen
    assert pos[("participant_joined", "bob", "")] < pos[("participant_left", "bob", "")], seen

    # ids, timestamps, room and participant details
    ids = [e.id for e in events]
    assert all(i.startswith("EV_") for i in ids), ids
    assert len(set(ids)) == len(ids), f"duplicate ids: {ids}"
    now = time.time()
    for e in events:
        assert abs(e.created_at - now) < 300, f"{e.event}: created_at {e.created_at} vs now {now:.0f}"
        assert (e.room.name, e.room.sid) == (room_name, room.sid), f"{e.event}: room {e.room.name} {e.room.sid}"
    by_key = dict(zip(seen, events))
    assert by_key[("participant_joined", "alice", "")].participant.sid == alice.lp.sid
    assert by_key[("participant_joined", "bob", "")].participant.sid == bob.lp.sid
    published = by_key[("track_published", "alice", pub.sid)]
    assert published.participant.sid == alice.lp.sid
    assert published.track.type == api.TrackType.AUDIO

    # the signature covers the body
    d = deliveries[seen.index(("track_published", "alice", pub.sid))]
    auth = d.headers["authorization"]
    with pytest.raises(Exception):
        RECEIVER.receive(d.text + " ", auth)

    # Node's WebhookReceiver accepts the same delivery, and not a changed body
    if node_available() is None:
        code, out = await run_node("verify_webhook.mjs", API_KEY, API_SECRET, auth, stdin=d.body)
        assert code == 0, f"Node WebhookReceiver refused the delivery: {out}"
        assert (out.get("event"), out.get("id"), (out.get("track") or {}).get("sid")) == (
            "track_published", published.id, pub.sid), out
        code, out = await run_node("verify_webhook.mjs", API_KEY, API_SECRET, auth, stdin=d.body + b" ")
        assert code == 1, f"Node WebhookReceiver accepted a changed body: {out}"


async def test_webhook_delete_room(server, sink, lkapi, pool, room_name):
    room = await lkapi.create_room(room_name, empty_timeout=30)
    alice = await pool.connect("alice", room_name)
    await sink.wait(is_event(room_name, "participant_joined", "alice"), what="alice joined")
    await lkapi.delete_room(room_name)
    await alice.events.wait("disconnected", what="room deleted")

    await sink.wait(is_event(room_name, "room_finished"), timeout=ROOM_FINISHED_TIMEOUT, what="room_finished")
    await drained(sink, lkapi)
    events = [verify(d) for d in sink.for_room(room_name)]
    seen = [key(e) for e in events]
    assert seen == [
        ("room_started", "", ""),
        ("participant_joined", "alice", ""),
        ("participant_left", "alice", ""),
        ("room_finished", "", ""),
    ], seen
    assert all(e.room.sid == room.sid for e in events)


async def test_webhook_connection_aborted(server, sink, lkapi, room_name):
    """A participant that leaves before its media ever connected is reported
    as participant_connection_aborted, not joined / left (LiveKit's telemetry)."""
    await lkapi.create_room(room_name, empty_timeout=30)
    async with aiohttp.ClientSession() as s:
        raw = await RawSignal.open(s, server, room_name, "no-media")  # signal only, no PeerConnection
        await raw.send(proto_rtc.SignalRequest(leave=proto_rtc.LeaveRequest()))
        await raw.ws.close()
    await sink.wait(is_event(room_name, "participant_connection_aborted", "no-media"), what="connection aborted")
    await drained(sink, lkapi)
    seen = [key(verify(d)) for d in sink.for_room(room_name)]
    assert seen == [("room_started", "", ""), ("participant_connection_aborted", "no-media", "")], seen
    await lkapi.delete_room(room_name)


async def test_webhook_retry(server, sink, lkapi, pool):
    """/flaky answers 500 to the first delivery of each event of this room:
    the server sends it again; /hook still gets it once."""
    room_name = f"{FLAKY_MARK}-{uuid.uuid4().hex[:8]}"
    await lkapi.create_room(room_name, empty_timeout=30)
    await pool.connect("alice", room_name)

    joined = is_event(room_name, "participant_joined", "alice")
    first, second = (await sink.wait(joined, path="/flaky", count=2, timeout=20,
                                     what="participant_joined, then its retry"))[:2]
    assert (first.answered, second.answered) == (500, 200)
    e1, e2 = verify(first), verify(second)
    assert e1.id == e2.id, "a retry must carry the same event id"
    assert (e2.event, e2.participant.identity) == ("participant_joined", "alice")

    await drained(sink, lkapi)
    assert len(sink.received(joined, "/flaky")) == 2, "more than one retry after a 200"
    assert len(sink.received(joined, "/hook")) == 1, "a healthy URL got the event more than once"
    await lkapi.delete_room(room_name)
