"""Active speakers: the server reports who is speaking from the audio-level
header extension, to the speaker and to its subscribers."""

import asyncio

from livekit import rtc

from helpers import TonePublisher, audio_packets_received, bounded

AUDIO_PACKETS_BEFORE_LOUD = 100  # ~2 s of bob's silence seen by carol first


def speaker_identities(args) -> set[str]:
    (speakers,) = args
    return {p.identity for p in speakers}


async def test_loud_track_is_speaking_silent_is_not(connect):
    carol = await connect("carol")
    bob = await connect("bob")
    alice = await connect("alice")

    silent = TonePublisher(440.0, amplitude=0.0)
    await silent.publish(bob)
    await carol.wait_track_subscribed("bob", rtc.TrackKind.KIND_AUDIO)

    async def _silence_flowing():
        while await audio_packets_received(carol) < AUDIO_PACKETS_BEFORE_LOUD:
            await asyncio.sleep(0.1)

    await bounded(_silence_flowing(), 15, "bob's silent audio reaching carol")

    loud = TonePublisher(440.0, amplitude=0.5)
    await loud.publish(alice)
    await carol.wait_track_subscribed("alice", rtc.TrackKind.KIND_AUDIO)

    await carol.events.wait(
        "active_speakers_changed",
        lambda speakers: "alice" in {p.identity for p in speakers},
        what="alice speaking, seen by a subscriber",
    )
    await alice.events.wait(
        "active_speakers_changed",
        lambda speakers: "alice" in {p.identity for p in speakers},
        what="alice speaking, seen by herself",
    )
    seen = set().union(*(speaker_identities(a) for a in carol.events.matching("active_speakers_changed")))
    assert "bob" not in seen, f"silent bob reported as speaking: {seen}"

    # when alice falls silent she leaves the list
    mark = carol.events.mark()
    await loud.stop()
    await carol.events.wait(
        "active_speakers_changed",
        lambda speakers: "alice" not in {p.identity for p in speakers},
        since=mark,
        what="alice no longer speaking",
    )
