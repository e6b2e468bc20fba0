"""Audio and video through the server, subscription control and mute, in
single and dual peer-connection mode."""

from livekit import rtc

from helpers import (
    VIDEO_H,
    VIDEO_W,
    SolidVideoPublisher,
    TonePublisher,
    dominant_frequency,
    mean_rgb,
    receive_tone,
    receive_video_frame,
    wait_audio_stopped,
)

AUDIO = rtc.TrackKind.KIND_AUDIO
VIDEO = rtc.TrackKind.KIND_VIDEO
TONE_HZ = 440.0


def assert_tone(samples, freq=TONE_HZ, tolerance=10.0):
    f = dominant_frequency(samples)
    assert abs(f - freq) <= tolerance, f"dominant frequency {f:.1f} Hz, expected {freq} +- {tolerance}"


async def test_audio_tone(connect):
    alice = await connect("alice")
    bob = await connect("bob")
    tone = TonePublisher(TONE_HZ)
    pub = await tone.publish(alice)
    assert pub.sid.startswith("TR_"), pub.sid

    track, rpub = await bob.wait_track_subscribed("alice", AUDIO)
    assert rpub.sid == pub.sid
    assert rpub.source == rtc.TrackSource.SOURCE_MICROPHONE

    assert_tone(await receive_tone(track, seconds=1.5))


async def test_video_solid_colour(connect):
    alice = await connect("alice")
    bob = await connect("bob")
    video = SolidVideoPublisher((255, 0, 0))
    pub = await video.publish(alice)
    assert pub.sid.startswith("TR_"), pub.sid

    track, rpub = await bob.wait_track_subscribed("alice", VIDEO)
    assert rpub.sid == pub.sid

    frame = await receive_video_frame(track)
    assert (frame.width, frame.height) == (VIDEO_W, VIDEO_H)
    r, g, b = mean_rgb(frame)
    assert r > 180 and g < 80 and b < 80, f"mean colour {r:.0f},{g:.0f},{b:.0f} is not red"


async def test_unsubscribe_resubscribe(connect):
    alice = await connect("alice")
    bob = await connect("bob")
    await TonePublisher(TONE_HZ).publish(alice)
    track, rpub = await bob.wait_track_subscribed("alice", AUDIO)
    assert_tone(await receive_tone(track, seconds=0.5))

    mark = bob.events.mark()
    rpub.set_subscribed(False)
    await bob.events.wait("track_unsubscribed", lambda t, p, part: p.sid == rpub.sid, since=mark)
    assert not rpub.subscribed
    # The server must stop forwarding. Wait for that before resubscribing:
    # the SDK sends set_subscribed's requests from spawned tasks, so a quick
    # resubscribe can reach the server before the unsubscribe.
    await wait_audio_stopped(bob)

    mark = bob.events.mark()
    rpub.set_subscribed(True)
    track2, rpub2 = await bob.wait_track_subscribed("alice", AUDIO, since=mark)
    assert rpub2.sid == rpub.sid
    assert_tone(await receive_tone(track2, seconds=0.5))


async def test_mute_unmute(connect):
    alice = await connect("alice")
    bob = await connect("bob")
    tone = TonePublisher(TONE_HZ)
    pub = await tone.publish(alice)
    _, rpub = await bob.wait_track_subscribed("alice", AUDIO)
    assert not rpub.muted

    def is_alices_track(participant, publication):
        return participant.identity == "alice" and publication.sid == pub.sid

    mark = bob.events.mark()
    tone.track.mute()
    await bob.events.wait("track_muted", is_alices_track, since=mark)
    assert rpub.muted

    mark = bob.events.mark()
    tone.track.unmute()
    await bob.events.wait("track_unmuted", is_alices_track, since=mark)
    assert not rpub.muted
