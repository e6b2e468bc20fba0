"""Receivers behind a veth pair: the `--veth` topology of `bench/run.py`.

On loopback the kernel delivers a datagram to its receiving socket inside
the sender's `sendmmsg` (the loopback device hands the packet to the
receive path in the sending thread's softirq), so the server's CPU time
includes every subscriber's kernel receive path: IP input, the UDP socket
lookup, the enqueue and the wakeup of the load generator. `perf` puts that
at about a third of the server's CPU in audio-200. On a real network that
work happens on the subscribers' machines.

This module puts the load generator in its own network namespace, joined
to the server's by a veth pair whose two ends each receive in a threaded
NAPI poller (a kernel thread per end, `napi/<device>-<id>`), as a NIC's
receive would run outside the sender. The server's account then holds what
it does itself: its own work and its send path down to the device.

The NAPI threads' CPU time is reported beside the server's, so nothing is
hidden: it is the receive work of both directions.

Needs root, `ip` (iproute2) and `ethtool` (Debian packages `iproute2` and
`ethtool`). GRO is turned on for both ends because veth receives through
NAPI only then, and UDP GRO forwarding because veth otherwise passes a
socket's UDP datagrams around NAPI (`veth_skb_is_eligible_for_gro`,
drivers/net/veth.c); no datagram is merged on the way to a socket that did
not ask for UDP GRO.
"""

import glob
import os
import shutil
import subprocess

NAMESPACE = "ferrokit-bench"
SERVER_DEV = "fkbench0"
CLIENT_DEV = "fkbench1"
SERVER_IP = "10.203.77.1"
CLIENT_IP = "10.203.77.2"
PREFIX = 30
# Queues per end. Each receive queue is a ring of 256 packets with its own
# NAPI thread, and veth drops what does not fit: with one queue audio-500,
# whose two workers each send 250 datagrams in one call, lost 20 %; with
# two 0.26 %, with four none. But the sender wakes each queue's thread for
# each burst, and those wakes are on the server's account (a NIC takes one
# doorbell write per batch): more queues cost the server more. Two, and
# what the pair drops is reported (`veth_dropped`) so that loss is not
# taken for the server's. The sender spreads datagrams over the queues by
# a hash of their addresses.
QUEUES = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


class SetupError(RuntimeError):
    """The topology could not be made (not root, a tool missing, a command refused)."""


def _run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SetupError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")


def _in_ns(*cmd):
    return ("ip", "netns", "exec", NAMESPACE, *cmd)


def setup():
    """Makes the namespace and the veth pair (removing a stale pair first)."""
    if os.geteuid() != 0:
        raise SetupError("--veth needs root (network namespaces, veth, ethtool)")
    missing = [t for t in ("ip", "ethtool") if shutil.which(t) is None]
    if missing:
        raise SetupError(f"--veth needs {' and '.join(missing)} "
                         "(apt-get install iproute2 ethtool)")
    teardown()
    _run("ip", "netns", "add", NAMESPACE)
    _run("ip", "link", "add", SERVER_DEV, "numtxqueues", str(QUEUES), "numrxqueues",
         str(QUEUES), "type", "veth", "peer", "name", CLIENT_DEV, "netns", NAMESPACE,
         "numtxqueues", str(QUEUES), "numrxqueues", str(QUEUES))
    _run("ip", "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", SERVER_DEV)
    _run("ip", "link", "set", SERVER_DEV, "up")
    _run(*_in_ns("ip", "addr", "add", f"{CLIENT_IP}/{PREFIX}", "dev", CLIENT_DEV))
    _run(*_in_ns("ip", "link", "set", CLIENT_DEV, "up"))
    _run(*_in_ns("ip", "link", "set", "lo", "up"))
    _run("ethtool", "-K", SERVER_DEV, "gro", "on", "rx-udp-gro-forwarding", "on")
    _run(*_in_ns("ethtool", "-K", CLIENT_DEV, "gro", "on", "rx-udp-gro-forwarding", "on"))
    # `ip netns exec` mounts the namespace's own /sys for the client end.
    _run("sh", "-c", f"echo 1 > /sys/class/net/{SERVER_DEV}/threaded")
    _run(*_in_ns("sh", "-c", f"echo 1 > /sys/class/net/{CLIENT_DEV}/threaded"))


def teardown():
    """Removes the namespace (and with it both ends of the pair); no error if absent."""
    subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True)


def wrap(cmd):
    """`cmd` run inside the load generator's namespace."""
    return list(_in_ns(*cmd))


def napi_cpu_seconds():
    """CPU seconds (user + system) of the pair's NAPI threads so far."""
    total = 0
    for comm in glob.glob("/proc/[0-9]*/comm"):
        try:
            with open(comm) as f:
                name = f.read().strip()
            if not name.startswith(("napi/" + SERVER_DEV, "napi/" + CLIENT_DEV)):
                continue
            with open(os.path.join(os.path.dirname(comm), "stat")) as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # Gone between the listing and the read.
        total += int(rest[11]) + int(rest[12])
    return total / CLK_TCK


def dropped():
    """Datagrams the server's end of the pair has dropped so far (a full
    ring at the other end: veth counts them as the sender's tx drops)."""
    try:
        with open(f"/sys/class/net/{SERVER_DEV}/statistics/tx_dropped") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0
