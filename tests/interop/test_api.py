"""The server API (Twirp RoomService), called through both official server
SDKs: Python livekit-api (protobuf bodies) and Node livekit-server-sdk (JSON
bodies). Each effect is checked from connected Python `livekit` participants;
refusals are checked through the SDKs and with raw HTTP."""

import json
import uuid

import pytest
from livekit import api, rtc

from helpers import TonePublisher, bounded, make_token, receive_tone, wait_audio_stopped
from server_api import SDKS, ApiError, admin_token, make_room_api, node_available, twirp_raw

AUDIO = rtc.TrackKind.KIND_AUDIO
ACTIVE = api.ParticipantInfo.State.ACTIVE
SDK_REFUSAL_TIMEOUT = 45.0  # the SDK retries a refused join a few times


@pytest.fixture(params=SDKS)
def sdk(request) -> str:
    """Which server SDK calls the API: "python" or "node"."""
    if request.param == "node" and (why := node_available()):
        pytest.skip(why)
    return request.param


@pytest.fixture
async def room_api(server, sdk):
    """The RoomService through the test's SDK, with the dev key."""
    client = make_room_api(sdk, server.http_url)
    yield client
    await client.close()


async def expect_api_error(aw, code: str, status: int) -> ApiError:
    """Await an API call that must fail with Twirp `code` / HTTP `status`."""
    with pytest.raises(ApiError) as err:
        await aw
    assert (err.value.code, err.value.status) == (code, status), f"expected {code}/{status}, got {err.value}"
    return err.value


async def connect_pair(pool, room_name):
    """alice and bob in room_name, each knowing the other."""
    alice = await pool.connect("alice", room_name, token=make_token("alice", room_name, name="Alice"))
    bob = await pool.connect("bob", room_name)
    await alice.wait_participant("bob")
    await bob.wait_participant("alice")
    return alice, bob


# ---------------------------------------------------------------- rooms


async def test_create_and_list_rooms(room_api, pool, room_name):
    created = await room_api.create_room(room_name, empty_timeout=30, departure_timeout=5, max_participants=7,
                                         metadata="m0")
    assert created.name == room_name
    assert created.sid.startswith("RM_"), created.sid
    assert (created.empty_timeout, created.departure_timeout, created.max_participants, created.metadata) == (
        30, 5, 7, "m0")

    again = await room_api.create_room(room_name, empty_timeout=30, departure_timeout=5, max_participants=7,
                                       metadata="m0")
    assert again.sid == created.sid, "CreateRoom on an existing room must return that room"

    other = f"{room_name}-b"
    other_room = await room_api.create_room(other, empty_timeout=5)
    assert other_room.sid != created.sid

    (listed,) = await room_api.list_rooms([room_name])
    assert (listed.name, listed.sid, listed.metadata) == (room_name, created.sid, "m0")
    both = await room_api.list_rooms([room_name, other, f"no-such-room-{uuid.uuid4().hex[:6]}"])
    assert sorted(r.name for r in both) == sorted([room_name, other])
    assert {room_name, other} <= {r.name for r in await room_api.list_rooms()}

    # a participant joins the room created through the API
    alice = await pool.connect("alice", room_name)
    assert await bounded(alice.room.sid, 10, "room sid") == created.sid
    assert alice.room.metadata == "m0"
    (listed,) = await room_api.list_rooms([room_name])
    assert listed.num_participants == 1

    await room_api.delete_room(other)
    assert await room_api.list_rooms([other]) == []


async def test_max_participants(room_api, pool, room_name):
    await room_api.create_room(room_name, max_participants=1, empty_timeout=10)
    await pool.connect("alice", room_name)
    with pytest.raises(rtc.ConnectError):
        await pool.connect("bob", room_name, timeout=SDK_REFUSAL_TIMEOUT, connect_timeout=5)
    assert [p.identity for p in await room_api.list_participants(room_name)] == ["alice"]


async def test_delete_room(room_api, pool, room_name):
    alice, bob = await connect_pair(pool, room_name)
    await room_api.delete_room(room_name)
    for c in (alice, bob):
        (reason,) = await c.events.wait("disconnected", what="after DeleteRoom")
        assert reason == rtc.DisconnectReason.ROOM_DELETED, f"{c.identity}: disconnect reason {reason}"
    assert await room_api.list_rooms([room_name]) == []
    await expect_api_error(room_api.delete_room(room_name), "not_found", 404)


async def test_update_room_metadata(room_api, pool, room_name):
    alice, bob = await connect_pair(pool, room_name)
    room = await room_api.update_room_metadata(room_name, "meta-1")
    assert (room.name, room.metadata) == (room_name, "meta-1")
    for c in (alice, bob):
        await c.events.wait("room_metadata_changed", lambda old, new: new == "meta-1", what="meta-1")
        assert c.room.metadata == "meta-1"
    (listed,) = await room_api.list_rooms([room_name])
    assert listed.metadata == "meta-1"
    await expect_api_error(room_api.update_room_metadata(f"{room_name}-none", "x"), "not_found", 404)


# ---------------------------------------------------------------- participants


async def test_list_and_get_participants(room_api, pool, room_name):
    alice = await pool.connect("alice", room_name, token=make_token("alice", room_name, name="Alice"))
    pub = await TonePublisher().publish(alice)
    bob = await pool.connect("bob", room_name)
    await bob.wait_track_subscribed("alice", AUDIO)
    await alice.wait_active("bob")

    parts = {p.identity: p for p in await room_api.list_participants(room_name)}
    assert set(parts) == {"alice", "bob"}
    assert parts["alice"].sid == alice.lp.sid and parts["bob"].sid == bob.lp.sid
    assert parts["alice"].name == "Alice"
    for p in parts.values():
        assert p.state == ACTIVE, f"{p.identity}: state {api.ParticipantInfo.State.Name(p.state)}"
    (track,) = parts["alice"].tracks
    assert track.sid == pub.sid
    assert (track.type, track.source, track.muted) == (api.TrackType.AUDIO, api.TrackSource.MICROPHONE, False)
    assert not parts["bob"].tracks

    got = await room_api.get_participant(room_name, "alice")
    assert (got.identity, got.sid, got.name, got.state) == ("alice", alice.lp.sid, "Alice", ACTIVE)
    assert [t.sid for t in got.tracks] == [pub.sid]
    assert got.joined_at > 0

    await expect_api_error(room_api.get_participant(room_name, "nobody"), "not_found", 404)


async def test_update_participant_fields(room_api, pool, room_name):
    alice, bob = await connect_pair(pool, room_name)
    attrs = {"role": "host", "seat": "3"}
    info = await room_api.update_participant(room_name, "alice", metadata="md-1", name="Alice B.", attributes=attrs)
    assert (info.identity, info.sid, info.metadata, info.name) == ("alice", alice.lp.sid, "md-1", "Alice B.")
    assert dict(info.attributes) == attrs

    def is_alice(p):
        return p.identity == "alice"

    # seen by alice herself and by bob
    for c in (alice, bob):
        await c.events.wait("participant_metadata_changed", lambda p, old, new: is_alice(p) and new == "md-1",
                            what="alice md-1")
        await c.events.wait("participant_name_changed", lambda p, old, new: is_alice(p) and new == "Alice B.",
                            what="alice renamed")
        await c.events.wait("participant_attributes_changed",
                            lambda changed, p: is_alice(p) and changed.get("role") == "host", what="alice attributes")
    remote = bob.room.remote_participants["alice"]
    for p in (alice.lp, remote):
        assert (p.metadata, p.name, dict(p.attributes)) == ("md-1", "Alice B.", attrs)

    # LiveKit semantics: empty metadata / name leave them unchanged; an
    # attribute set to "" is deleted
    mark = bob.events.mark()
    info = await room_api.update_participant(room_name, "alice", attributes={"seat": ""})
    assert (info.metadata, info.name, dict(info.attributes)) == ("md-1", "Alice B.", {"role": "host"})
    await bob.events.wait("participant_attributes_changed", lambda changed, p: p.identity == "alice", since=mark,
                          what="seat deleted")
    assert dict(remote.attributes) == {"role": "host"}

    got = await room_api.get_participant(room_name, "alice")
    assert (got.metadata, got.name, dict(got.attributes)) == ("md-1", "Alice B.", {"role": "host"})
    await expect_api_error(room_api.update_participant(room_name, "nobody", metadata="x"), "not_found", 404)


async def test_update_participant_permission(room_api, pool, room_name):
    """Revoking can_subscribe drops the participant's subscriptions, granting
    it back restores them; revoking can_publish unpublishes the participant's
    tracks (LiveKit's SetPermission)."""
    alice, bob = await connect_pair(pool, room_name)
    pub = await TonePublisher().publish(alice)
    track, _ = await bob.wait_track_subscribed("alice", AUDIO)
    await receive_tone(track, seconds=0.2)

    def perm(**kw):
        return {"can_subscribe": True, "can_publish": True, "can_publish_data": True, **kw}

    mark = bob.events.mark()
    info = await room_api.update_participant(room_name, "bob", permission=perm(can_subscribe=False))
    assert (info.identity, info.permission.can_subscribe, info.permission.can_publish) == ("bob", False, True)
    await bob.events.wait("participant_permissions_changed", lambda p, pm: p.identity == "bob" and not pm.can_subscribe,
                          since=mark, what="bob losing can_subscribe")
    # no SDK event for a server-side unsubscription (see test_update_subscriptions)
    await wait_audio_stopped(bob)

    mark = bob.events.mark()
    info = await room_api.update_participant(room_name, "bob", permission=perm())
    assert info.permission.can_subscribe
    await bob.wait_track_subscribed("alice", AUDIO, since=mark)

    mark, bob_mark = alice.events.mark(), bob.events.mark()
    info = await room_api.update_participant(room_name, "alice", permission=perm(can_publish=False))
    assert not info.permission.can_publish
    await alice.events.wait("participant_permissions_changed",
                            lambda p, pm: p.identity == "alice" and not pm.can_publish, since=mark,
                            what="alice losing can_publish")
    assert not alice.lp.permissions.can_publish
    await bob.events.wait("track_unpublished", lambda p, part: p.sid == pub.sid, since=bob_mark,
                          what="alice's track removed when can_publish was revoked")
    assert not (await room_api.get_participant(room_name, "alice")).tracks


async def test_remove_participant(room_api, pool, room_name):
    alice, bob = await connect_pair(pool, room_name)
    await room_api.remove_participant(room_name, "bob")
    (reason,) = await bob.events.wait("disconnected", what="after RemoveParticipant")
    assert reason == rtc.DisconnectReason.PARTICIPANT_REMOVED, f"disconnect reason {reason}"
    await alice.events.wait("participant_disconnected", lambda p: p.identity == "bob", what="bob removed")
    assert [p.identity for p in await room_api.list_participants(room_name)] == ["alice"]
    await expect_api_error(room_api.remove_participant(room_name, "bob"), "not_found", 404)


# ---------------------------------------------------------------- tracks and data


async def test_mute_published_track(room_api, pool, room_name):
    alice, bob = await connect_pair(pool, room_name)
    pub = await TonePublisher().publish(alice)
    _, rpub = await bob.wait_track_subscribed("alice", AUDIO)

    def alices_track(p, publication):
        return p.identity == "alice" and publication.sid == pub.sid

    track = await room_api.mute_published_track(room_name, "alice", pub.sid, True)
    assert (track.sid, track.muted) == (pub.sid, True)
    await bob.events.wait("track_muted", alices_track, what="alice's track muted (remote view)")
    await alice.events.wait("track_muted", alices_track, what="alice's own track muted")
    assert rpub.muted and pub.muted
    (info,) = (await room_api.get_participant(room_name, "alice")).tracks
    assert info.muted
    # (LiveKit refuses remote unmute unless room.enable_remote_unmute is set,
    # and answers an unknown track sid with an empty track: neither checked)


async def test_update_subscriptions(room_api, pool, room_name):
    alice, bob = await connect_pair(pool, room_name)
    pub = await TonePublisher().publish(alice)
    track, _ = await bob.wait_track_subscribed("alice", AUDIO)
    await receive_tone(track, seconds=0.2)

    await room_api.update_subscriptions(room_name, "bob", [pub.sid], False)
    # SDK 1.2.0 emits no track_unsubscribed for a server-side unsubscription
    # (only for its own set_subscribed(False)): the effect is that media stops
    await wait_audio_stopped(bob)

    mark = bob.events.mark()
    await room_api.update_subscriptions(room_name, "bob", [pub.sid], True)
    track, rpub = await bob.wait_track_subscribed("alice", AUDIO, since=mark)
    assert rpub.sid == pub.sid
    await receive_tone(track, seconds=0.2)


async def test_send_data(room_api, pool, room_name):
    clients = [await pool.connect(i, room_name) for i in ("alice", "bob", "carol")]
    alice, bob, carol = clients
    for c in clients:
        for other in clients:
            if other is not c:
                await c.wait_active(other.identity)

    def with_data(data):
        return lambda pkt: pkt.data == data

    to_all = f"to-all-{uuid.uuid4().hex}".encode()
    await room_api.send_data(room_name, to_all, topic="news")
    for c in clients:
        (pkt,) = await c.events.wait("data_received", with_data(to_all), what="SendData to all")
        assert pkt.topic == "news"
        assert pkt.kind == rtc.DataPacketKind.KIND_RELIABLE
        assert pkt.participant is None or pkt.participant.identity == "", "server data attributed to a participant"

    only_bob = f"only-bob-{uuid.uuid4().hex}".encode()
    fence = f"fence-{uuid.uuid4().hex}".encode()
    await room_api.send_data(room_name, only_bob, topic="direct", destination_identities=["bob"])
    # sent after only_bob on the same reliable channel: once carol and alice
    # have the fence, only_bob would have arrived had it been sent to them
    await room_api.send_data(room_name, fence, topic="fence", destination_identities=["alice", "carol"])
    (pkt,) = await bob.events.wait("data_received", with_data(only_bob), what="SendData to bob")
    assert pkt.topic == "direct"
    for c in (alice, carol):
        await c.events.wait("data_received", with_data(fence), what="fence")
        assert not c.events.matching("data_received", with_data(only_bob)), f"{c.identity} got bob's packet"
    assert not bob.events.matching("data_received", with_data(fence))


# ---------------------------------------------------------------- refusals


async def test_permission_denied(server, sdk, room_name):
    """Tokens lacking the grant a method needs are refused with
    permission_denied (HTTP 403), whichever SDK sends them."""
    cases = [
        # (grants, call)
        (dict(room_join=True, room=room_name), lambda c: c.list_participants(room_name)),
        (dict(room_admin=True, room=f"{room_name}-other"), lambda c: c.list_participants(room_name)),
        (dict(room_admin=True, room=room_name), lambda c: c.list_rooms()),
        (dict(room_admin=True, room=room_name), lambda c: c.create_room(room_name)),
        (dict(room_list=True), lambda c: c.delete_room(room_name)),
        (dict(room_list=True), lambda c: c.send_data(room_name, b"x")),
    ]
    for grants, call in cases:
        token = admin_token(**grants)
        client = make_room_api(sdk, server.http_url, token=token)
        try:
            await expect_api_error(call(client), "permission_denied", 403)
        finally:
            await client.close()

    # control: the matching grant works with the same kind of client
    client = make_room_api(sdk, server.http_url, token=admin_token(room_create=True))
    try:
        assert (await client.create_room(room_name, empty_timeout=1)).name == room_name
    finally:
        await client.close()


async def test_unauthenticated(server):
    """No token or a token with a wrong signature: 401 unauthenticated with a
    Twirp JSON error body (both body encodings)."""
    wrong = api.AccessToken("devkey", "not-the-secret").with_grants(api.VideoGrants(room_list=True)).to_jwt()
    for content_type, body in (("application/protobuf", b""), ("application/json", b"{}")):
        for token in (None, wrong, "not.a.jwt"):
            status, headers, text = await twirp_raw(server.http_url, "ListRooms", body, content_type, token=token)
            assert status == 401, f"{content_type} token={token and token[:12]}: {status} {text!r}"
            err = assert_twirp_error(headers, text)
            assert err["code"] == "unauthenticated", err


async def test_malformed_bodies(server):
    """Bodies that do not decode: HTTP 400 with a Twirp JSON error
    (malformed, or invalid_argument)."""
    token = admin_token(room_list=True, room_create=True)
    cases = [
        ("application/protobuf", b"\xff\xff\xff\xff\xff\x0f garbage"),
        ("application/protobuf", b"\x0a\x80"),  # a string field cut short
        ("application/json", b"{not json"),
        ("application/json", b'{"names": 5}'),  # wrong type
    ]
    for content_type, body in cases:
        status, headers, text = await twirp_raw(server.http_url, "ListRooms", body, content_type, token=token)
        assert status == 400, f"{content_type} {body!r}: {status} {text!r}"
        err = assert_twirp_error(headers, text)
        assert err["code"] in ("malformed", "invalid_argument"), err

    # control: well-formed raw requests in both encodings succeed, answered in kind
    status, headers, text = await twirp_raw(server.http_url, "ListRooms", b"", "application/protobuf", token=token)
    assert status == 200 and headers.get("content-type", "").startswith("application/protobuf"), (status, headers)
    status, headers, text = await twirp_raw(server.http_url, "ListRooms", b"{}", "application/json", token=token)
    assert status == 200 and headers.get("content-type", "").startswith("application/json"), (status, headers)


async def test_bad_route(server):
    """An unknown method is Twirp's bad_route (HTTP 404)."""
    token = admin_token(room_list=True, room_create=True, room_admin=True)
    status, headers, text = await twirp_raw(server.http_url, "NoSuchMethod", b"{}", "application/json", token=token)
    assert status == 404, (status, text)
    assert assert_twirp_error(headers, text)["code"] == "bad_route"


def assert_twirp_error(headers: dict, text: str) -> dict:
    """The body is a Twirp JSON error {"code", "msg"} served as exactly
    application/json (livekit-server-sdk only parses that content type)."""
    assert headers.get("content-type") == "application/json", f"error Content-Type {headers.get('content-type')!r}"
    try:
        err = json.loads(text)
    except ValueError:
        raise AssertionError(f"error body is not JSON: {text!r}") from None
    assert isinstance(err.get("code"), str) and isinstance(err.get("msg"), str), err
    return err
