"""Connection quality: the server scores every participant's media from its
RTCP reports and sends `connection_quality` on change, to the participant
itself and to those subscribed to its tracks."""

from livekit import rtc

from helpers import TonePublisher

# The server evaluates once per 5 s stats window; the first report comes
# within two windows of media flowing.
QUALITY_TIMEOUT = 25.0


def quality_of(identity: str):
    def match(participant, quality) -> bool:
        return participant is not None and participant.identity == identity and quality in (
            rtc.ConnectionQuality.QUALITY_EXCELLENT,
            rtc.ConnectionQuality.QUALITY_GOOD,
        )

    return match


async def test_quality_reaches_self_and_subscribers(connect):
    bob = await connect("bob")
    alice = await connect("alice")
    carol = await connect("carol", auto_subscribe=False)

    tone = TonePublisher(440.0, amplitude=0.3)
    await tone.publish(alice)
    await bob.wait_track_subscribed("alice", rtc.TrackKind.KIND_AUDIO)

    await alice.events.wait(
        "connection_quality_changed", quality_of("alice"), timeout=QUALITY_TIMEOUT, what="alice's own quality"
    )
    await bob.events.wait(
        "connection_quality_changed", quality_of("alice"), timeout=QUALITY_TIMEOUT, what="alice's quality at her subscriber"
    )
    await bob.events.wait(
        "connection_quality_changed", quality_of("bob"), timeout=QUALITY_TIMEOUT, what="bob's own quality"
    )
    # carol subscribes to nothing: she hears only about herself.
    await carol.events.wait(
        "connection_quality_changed", quality_of("carol"), timeout=QUALITY_TIMEOUT, what="carol's own quality"
    )
    about = {p.identity for p, _ in carol.events.matching("connection_quality_changed") if p is not None}
    assert about == {"carol"}, f"carol heard about {about}"
