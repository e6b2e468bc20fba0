"""Joining and leaving a room, in single and dual peer-connection mode."""

from helpers import assert_pc_mode, bounded, make_token


async def test_join(connect, room_name, pc_mode):
    alice = await connect("alice", token=make_token("alice", room_name, name="Alice A."))
    bob = await connect("bob")

    # bob joined second: alice learns of him through participant_connected,
    # bob knows alice from the JoinResponse (other_participants).
    (remote_bob,) = await alice.events.wait("participant_connected", lambda p: p.identity == "bob")
    assert "bob" in alice.room.remote_participants
    assert "alice" in bob.room.remote_participants
    remote_alice = bob.room.remote_participants["alice"]
    assert remote_alice.name == "Alice A."

    for c in (alice, bob):
        assert c.lp.sid.startswith("PA_"), c.lp.sid
        assert c.room.name == room_name
    assert alice.lp.sid != bob.lp.sid
    assert remote_bob.sid == bob.lp.sid
    assert remote_alice.sid == alice.lp.sid
    assert remote_alice.identity == "alice" and remote_bob.identity == "bob"

    # Room.sid is an async property in the Python SDK
    sid_a = await bounded(alice.room.sid, 10, "alice's room sid")
    sid_b = await bounded(bob.room.sid, 10, "bob's room sid")
    assert sid_a.startswith("RM_"), sid_a
    assert sid_a == sid_b

    for c in (alice, bob):
        await assert_pc_mode(c, pc_mode == "single")


async def test_leave(connect):
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.wait_participant("bob")
    assert "alice" in bob.room.remote_participants

    await bounded(alice.room.disconnect(), 10, "alice disconnecting")

    (gone,) = await bob.events.wait("participant_disconnected", lambda p: p.identity == "alice")
    assert gone.sid == alice.lp.sid
    assert "alice" not in bob.room.remote_participants
