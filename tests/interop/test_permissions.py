"""Subscription permissions: a publisher limits who may subscribe to its
tracks; the server unsubscribes the others and resubscribes them when
allowed again.

The Python SDK (Rust core) ignores `subscription_permission_update` and
raises no event when the server ends a subscription, so the revocation is
checked by its effect: the received audio stops."""

import asyncio

from livekit import rtc

from helpers import TonePublisher, audio_packets_received, bounded, wait_audio_stopped

AUDIO = rtc.TrackKind.KIND_AUDIO


async def packets_grow(client, what: str, timeout: float = 10.0) -> None:
    """Wait (bounded) until the client's received audio packet count grows."""

    async def _grow():
        start = await audio_packets_received(client)
        while await audio_packets_received(client) <= start:
            await asyncio.sleep(0.1)

    await bounded(_grow(), timeout, what)


async def test_revoke_and_grant_subscription(connect):
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    tone = TonePublisher()
    pub = await tone.publish(alice)
    await bob.wait_track_subscribed("alice", AUDIO)
    await carol.wait_track_subscribed("alice", AUDIO)
    await packets_grow(carol, "carol receiving alice before the restriction")

    alice.lp.set_track_subscription_permissions(
        allow_all_participants=False,
        participant_permissions=[rtc.ParticipantTrackPermission(participant_identity="bob", allow_all=True)],
    )
    await wait_audio_stopped(carol)
    await packets_grow(bob, "bob still receiving alice")

    mark = carol.events.mark()
    alice.lp.set_track_subscription_permissions(allow_all_participants=True)
    await carol.events.wait(
        "track_subscribed", lambda track, publication, participant: publication.sid == pub.sid, since=mark, what="carol allowed again"
    )
    await packets_grow(carol, "carol receiving alice again")
