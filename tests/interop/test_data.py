"""Data packets, RPC and text streams relayed by the server, in single and
dual peer-connection mode."""

import asyncio
import random
import uuid

import pytest
from livekit import rtc

from helpers import Client, bounded

RELIABLE = rtc.DataPacketKind.KIND_RELIABLE
LOSSY = rtc.DataPacketKind.KIND_LOSSY


async def connect_active(connect, *identities: str) -> list[Client]:
    """Connect the participants and wait until each sees every other as ACTIVE
    (media connected: ready for data)."""
    clients = [await connect(i) for i in identities]
    for c in clients:
        for other in identities:
            if other != c.identity:
                await c.wait_active(other)
    return clients


def unique(prefix: str) -> bytes:
    return f"{prefix}-{uuid.uuid4().hex}".encode()


def with_data(data: bytes):
    return lambda pkt: pkt.data == data


async def fence(sender: Client, receiver: Client) -> None:
    """Reliable sender -> receiver round through the server. Packets to one
    receiver leave the server in order on its reliable channel, so anything
    the server had queued for `receiver` before this has arrived once it returns."""
    marker = unique("fence")
    await bounded(sender.lp.publish_data(marker, destination_identities=[receiver.identity], topic="fence"),
                  10, "fence publish")
    await receiver.events.wait("data_received", with_data(marker), what="fence")


async def expect_packet(rx: Client, data: bytes, *, sender: str, topic: str, kind) -> None:
    (pkt,) = await rx.events.wait("data_received", with_data(data), what=f"{data[:20]!r} from {sender}")
    assert pkt.participant is not None, "sender participant missing"
    assert pkt.participant.identity == sender
    assert pkt.topic == topic
    assert pkt.kind == kind


@pytest.fixture
async def trio(connect):
    return await connect_active(connect, "alice", "bob", "carol")


async def test_data_reliable_broadcast(trio):
    alice, bob, carol = trio
    payload = unique("hello all")
    await bounded(alice.lp.publish_data(payload, reliable=True, topic="greeting"), 10, "publish_data")

    for rx in (bob, carol):
        await expect_packet(rx, payload, sender="alice", topic="greeting", kind=RELIABLE)

    await fence(bob, alice)
    assert not alice.events.matching("data_received", with_data(payload)), "sender got its own packet back"
    for rx in (bob, carol):
        await fence(alice, rx)
        assert len(rx.events.matching("data_received", with_data(payload))) == 1, f"{rx.identity}: duplicates"


async def test_data_destination(trio):
    alice, bob, carol = trio
    payload = unique("only bob")
    await bounded(alice.lp.publish_data(payload, destination_identities=["bob"], topic="direct"), 10, "publish_data")

    await expect_packet(bob, payload, sender="alice", topic="direct", kind=RELIABLE)
    await fence(alice, carol)
    assert not carol.events.matching("data_received", with_data(payload)), "carol got a packet addressed to bob"
    await fence(bob, alice)
    assert not alice.events.matching("data_received", with_data(payload)), "sender got its own packet back"


async def test_data_lossy(trio):
    alice, bob, carol = trio
    # a few packets: lossy may in principle drop one, loopback should not
    payloads = {unique(f"lossy{i}") for i in range(5)}
    for p in payloads:
        await bounded(alice.lp.publish_data(p, reliable=False, topic="telemetry"), 10, "publish_data lossy")

    for rx in (bob, carol):
        (pkt,) = await rx.events.wait("data_received", lambda pkt: pkt.data in payloads, what="lossy packet")
        assert pkt.participant is not None and pkt.participant.identity == "alice"
        assert pkt.topic == "telemetry"
        assert pkt.kind == LOSSY


async def test_rpc(connect):
    alice, bob = await connect_active(connect, "alice", "bob")
    callers = []

    async def echo(data: rtc.RpcInvocationData) -> str:
        callers.append(data.caller_identity)
        return f"pong:{data.payload}"

    async def refuse(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4321, "refused on purpose", data="details")

    bob.lp.register_rpc_method("echo", echo)
    bob.lp.register_rpc_method("refuse", refuse)

    reply = await bounded(
        alice.lp.perform_rpc(destination_identity="bob", method="echo", payload="ping-1", response_timeout=10),
        20, "perform_rpc echo")
    assert reply == "pong:ping-1"
    assert callers == ["alice"]

    with pytest.raises(rtc.RpcError) as err:
        await bounded(
            alice.lp.perform_rpc(destination_identity="bob", method="refuse", payload="x", response_timeout=10),
            20, "perform_rpc refuse")
    assert err.value.code == 4321
    assert err.value.message == "refused on purpose"


async def test_text_stream(connect):
    alice, bob = await connect_active(connect, "alice", "bob")
    rng = random.Random(1234)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n\u00e9\u00df\u6f22\U0001f642"
    text = "".join(rng.choice(alphabet) for _ in range(50_000))
    assert len(text.encode()) > 50_000  # several chunks (the SDK chunks at ~15 kB)

    received: asyncio.Future = asyncio.get_running_loop().create_future()
    readers: set[asyncio.Task] = set()

    def on_stream(reader: rtc.TextStreamReader, sender_identity: str) -> None:
        async def read():
            try:
                body = await reader.read_all()
                if not received.done():
                    received.set_result((sender_identity, reader.info.topic, body))
            except Exception as e:
                if not received.done():
                    received.set_exception(e)

        task = asyncio.create_task(read())
        readers.add(task)
        task.add_done_callback(readers.discard)

    bob.room.register_text_stream_handler("long-text", on_stream)
    # compress=False keeps the chunk count deterministic (SDK default compresses)
    info = await bounded(alice.lp.send_text(text, topic="long-text", compress=False), 20, "send_text")

    sender, topic, body = await bounded(received, 20, "bob reading the text stream")
    assert sender == "alice"
    assert topic == "long-text"
    assert len(body) == len(text)
    assert body == text
    assert info.topic == "long-text"
