"""The CLI's `token create` and `generate-keys`, and the Prometheus endpoint."""

import asyncio
import re
import subprocess
import time

import aiohttp
import jwt
import pytest
from livekit import api

from helpers import API_KEY, API_SECRET, expect_publish_refused
from server_api import HTTP_TIMEOUT

CLI_TIMEOUT = 15.0
METRICS_TIMEOUT = 10.0


def run_cli(binary: str, *args: str) -> str:
    """Run `ferrokit <args>`; it must exit 0; return its stdout."""
    try:
        res = subprocess.run([binary, *args], capture_output=True, text=True, timeout=CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"ferrokit {' '.join(args)} did not exit within {CLI_TIMEOUT:.0f}s") from None
    assert res.returncode == 0, f"ferrokit {' '.join(args)}: exit {res.returncode}\n{res.stderr[-2000:]}"
    return res.stdout


def cli_token(binary: str, room: str, identity: str, *extra: str) -> str:
    out = run_cli(binary, "token", "create", "--api-key", API_KEY, "--api-secret", API_SECRET,
                  "--room", room, "--identity", identity, *extra)
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"token create must print only the token, got: {out!r}"
    return lines[0].strip()


async def test_token_create(ferrokit_bin, pool, room_name):
    token = cli_token(ferrokit_bin, room_name, "cli-user", "--name", "CLI User", "--metadata", "cli-md",
                      "--valid-for", "6h", "--grant", "can_publish=false")
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(token)
    assert (claims.identity, claims.name, claims.metadata) == ("cli-user", "CLI User", "cli-md")
    assert claims.video.room == room_name and claims.video.room_join
    assert claims.video.can_publish is False
    raw = jwt.decode(token, options={"verify_signature": False})
    assert abs(raw["exp"] - time.time() - 6 * 3600) < 120, f"exp {raw['exp']} is not ~6h from now"

    # a default token from the CLI (room join, all publish/subscribe rights)
    default = cli_token(ferrokit_bin, room_name, "cli-default")
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(default)
    assert claims.video.room_join and claims.video.can_publish is not False
    raw = jwt.decode(default, options={"verify_signature": False})
    assert raw["exp"] > time.time() + 60

    # both join; the server honours the tokens' contents and grants
    user = await pool.connect("cli-user", room_name, token=token)
    other = await pool.connect("cli-default", room_name, token=default)
    assert (user.lp.identity, user.lp.name, user.lp.metadata) == ("cli-user", "CLI User", "cli-md")
    remote = await other.wait_participant("cli-user")
    assert (remote.name, remote.metadata) == ("CLI User", "cli-md")
    assert not user.lp.permissions.can_publish
    await expect_publish_refused(user)


def test_generate_keys(ferrokit_bin):
    pairs = []
    for _ in range(2):
        out = run_cli(ferrokit_bin, "generate-keys")
        key = re.search(r"^API Key:\s+(\S+)\s*$", out, re.M)
        secret = re.search(r"^API Secret:\s+(\S+)\s*$", out, re.M)
        assert key and secret, f"expected 'API Key:  ...' and 'API Secret:  ...' lines, got {out!r}"
        pairs.append((key.group(1), secret.group(1)))
    (k1, s1), (k2, s2) = pairs
    assert k1.startswith("API") and len(k1) >= 10, k1
    assert len(s1) >= 32, f"secret too short: {s1!r}"
    assert k1 != k2 and s1 != s2, "generate-keys printed the same keys twice"
    # usable as a key pair by the SDK
    token = api.AccessToken(k1, s1).with_identity("x").with_grants(api.VideoGrants(room_join=True, room="r")).to_jwt()
    assert api.TokenVerifier(k1, s1).verify(token).identity == "x"


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def participant_samples(text: str) -> list[tuple[str, float]]:
    """(series, value) of every sample whose metric name mentions participants."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and "participant" in m.group(1):
            try:
                out.append((m.group(1) + (m.group(2) or ""), float(m.group(3))))
            except ValueError:
                pass
    return out


async def test_metrics(server, pool, room_name):
    if server.metrics_url is None:
        pytest.skip("external server: metrics port unknown")

    async def scrape() -> tuple[int, str, str]:
        async with aiohttp.ClientSession() as s:
            async with s.get(server.metrics_url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as r:
                return r.status, r.headers.get("Content-Type", ""), await r.text()

    await pool.connect("alice", room_name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + METRICS_TIMEOUT
    while True:
        try:
            status, ctype, text = await scrape()
        except aiohttp.ClientError as e:
            raise AssertionError(f"GET {server.metrics_url}: {e!r}") from None
        assert status == 200, f"GET {server.metrics_url}: {status} {text[:300]!r}"
        # Prometheus text (text/plain; version=0.0.4, what LiveKit serves) or OpenMetrics text
        assert ctype.startswith(("text/plain", "application/openmetrics-text")), f"Content-Type {ctype!r}"
        assert "# TYPE " in text, f"not Prometheus text format: {text[:300]!r}"
        samples = participant_samples(text)
        if any(v >= 1 for _, v in samples):
            return
        if loop.time() > deadline:
            raise AssertionError(f"no participant metric >= 1 with a participant connected; samples: {samples}")
        await asyncio.sleep(0.2)
