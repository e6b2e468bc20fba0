#!/usr/bin/env python3
"""Load benchmarks: ferrokit's own CPU time and memory while `ferrokit load-test` drives it.

For each scenario this starts a fresh release server (`ferrokit serve --dev`
with a Prometheus port), runs `ferrokit load-test --json` against it, and
samples the server around the load test's measurement window (the load test
marks it on stderr):

  - CPU: utime + stime of the server process from /proc/<pid>/stat;
  - packets forwarded: the server's `packet_out` counter from /metrics;
  - RSS: VmRSS from /proc/<pid>/status at the end of the window, minus the
    idle server's RSS, divided by the participants.

The window opens SETTLE_S after the last join (`--settle`). CPU per forwarded
packet = server CPU seconds in the window / packets sent to subscribers in
the window. Loss, latency and join times come from the load
test's subscribers (whole run).

Usage (from the repository root; builds release binaries first):
  python3 bench/run.py                      # every scenario
  python3 bench/run.py audio-200 video-10   # some
  python3 bench/run.py --list
  python3 bench/run.py --veth               # load generator behind a veth pair (netns.py)
Results: a table on stdout and bench/results/<date>-<commit>-<scenario set>.json.
Only the Python standard library is used.
"""

import argparse
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import netns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "ferrokit")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Seconds between the last join and the measurement window (`load-test
# --settle`). A connection's set-up goes on for seconds after its join
# (DTLS, the data channels' SCTP and, for 3 s after its last record, str0m
# rounds on a 20 ms grid): measured from the last join, audio-200 ran at
# ~10 % CPU for 3 s before settling at ~7.5 %, which is join cost (the
# join-storm scenario's) counted against forwarding.
SETTLE_S = 5.0

# name: (load-test arguments, participants per run, description)
SCENARIOS = {
    "audio-50": (["--audio-publishers", "1", "--subscribers", "50"], 51,
                 "1 audio publisher -> 50 subscribers"),
    "audio-200": (["--audio-publishers", "1", "--subscribers", "200"], 201,
                  "1 audio publisher -> 200 subscribers"),
    "audio-500": (["--audio-publishers", "1", "--subscribers", "500"], 501,
                  "1 audio publisher -> 500 subscribers"),
    "video-10": (["--video-publishers", "1", "--subscribers", "10"], 11,
                 "1 simulcast video publisher (3 layers) -> 10 subscribers"),
    "video-50": (["--video-publishers", "1", "--subscribers", "50"], 51,
                 "1 simulcast video publisher (3 layers) -> 50 subscribers"),
    "rooms-20x5": (["--rooms", "20", "--audio-publishers", "1", "--video-publishers", "1",
                    "--subscribers", "3"], 100,
                   "20 rooms x 5 participants (1 audio + 1 video publisher, 3 subscribers)"),
    "join-storm": (["--audio-publishers", "1", "--subscribers", "200",
                    "--join-concurrency", "200"], 201,
                   "200 subscribers join at once (all in flight), then 1 audio -> 200"),
}


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """(user, system) CPU seconds of the process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the parenthesised command name; utime and stime are
        # fields 14 and 15 (1-based) of proc(5).
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def packets_out(metrics_url):
    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^\S*packet_out_total(?:\{[^}]*\})? (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def wait_http(host, port, deadline):
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def sample(pid, metrics_url, veth):
    return {"t": time.monotonic(), "cpu": cpu_seconds(pid), "rss": rss_bytes(pid),
            "out": packets_out(metrics_url),
            "napi": netns.napi_cpu_seconds() if veth else 0.0,
            "veth_dropped": netns.dropped() if veth else 0}


def run_scenario(name, duration, dual_pc, binary=BIN, veth=False, settle=SETTLE_S):
    """One run of scenario `name` on `binary`; with `veth`, the load generator
    runs behind the veth pair of `netns` (set up by the caller)."""
    args, participants, _ = SCENARIOS[name]
    host = netns.SERVER_IP if veth else "127.0.0.1"
    http_port, udp_port, prom_port = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as cfg:
        cfg.write(f"prometheus_port: {prom_port}\n")
    log = open(os.path.join(tempfile.gettempdir(), f"ferrokit-bench-{name}.log"), "w")
    server = subprocess.Popen(
        [binary, "serve", "--dev", "--config", cfg.name, "--bind", host,
         "--port", str(http_port), "--udp-port", str(udp_port)],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    metrics_url = f"http://{host}:{prom_port}/metrics"
    try:
        if not wait_http(host, http_port, time.monotonic() + 10) or not wait_http(
                host, prom_port, time.monotonic() + 5):
            raise RuntimeError(f"server did not start; see {log.name}")
        idle_rss = rss_bytes(server.pid)
        # The load generator is always this tree's: only the server varies.
        cmd = [BIN, "load-test", "--url", f"ws://{host}:{http_port}", "--room", name,
               "--duration", str(duration), "--settle", str(settle), "--json", *args]
        if dual_pc:
            cmd.append("--dual-pc")
        if veth:
            cmd = netns.wrap(cmd)
        lt = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        marks = {}
        stderr_tail = []

        def read_stderr():
            for line in lt.stderr:
                if "measure-start" in line:
                    marks["start"] = sample(server.pid, metrics_url, veth)
                elif "measure-end" in line:
                    marks["end"] = sample(server.pid, metrics_url, veth)
                else:
                    stderr_tail.append(line)
                    del stderr_tail[:-20]

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        killer = threading.Timer(duration + 300, lt.kill)
        killer.start()
        out = lt.stdout.read()
        lt.wait()
        killer.cancel()
        reader.join(timeout=10)
        if lt.returncode != 0 or "start" not in marks or "end" not in marks:
            raise RuntimeError(f"{name}: load-test failed ({lt.returncode}): "
                               + "".join(stderr_tail[-5:]))
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        os.unlink(cfg.name)
    s, e = marks["start"], marks["end"]
    window = e["t"] - s["t"]
    user = e["cpu"][0] - s["cpu"][0]
    system = e["cpu"][1] - s["cpu"][1]
    cpu = user + system
    fwd = e["out"] - s["out"]
    napi = e["napi"] - s["napi"]
    return {
        "scenario": name,
        "mode": "dual-pc" if dual_pc else "single-pc",
        "network": "veth" if veth else "loopback",
        "participants": participants,
        "window_s": round(window, 2),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct": round(100 * cpu / window, 1) if window > 0 else None,
        "packets_forwarded": fwd,
        "packets_per_s": round(fwd / window) if window > 0 else None,
        "cpu_us_per_packet": round(cpu * 1e6 / fwd, 2) if fwd else None,
        "user_us_per_packet": round(user * 1e6 / fwd, 2) if fwd else None,
        "sys_us_per_packet": round(system * 1e6 / fwd, 2) if fwd else None,
        "napi_us_per_packet": round(napi * 1e6 / fwd, 2) if fwd and veth else None,
        "veth_dropped": e["veth_dropped"] - s["veth_dropped"] if veth else None,
        "rss_mb": round(e["rss"] / 2**20, 1),
        "rss_kb_per_participant": round((e["rss"] - idle_rss) / 1024 / participants, 1),
        "loss_pct": report.get("packet_loss_pct"),
        "latency_ms_p50": report.get("latency_ms_p50"),
        "latency_ms_p99": report.get("latency_ms_p99"),
        "join_ms_p50": report.get("join_ms_p50"),
        "join_ms_p99": report.get("join_ms_p99"),
        "subscribers_connected": report.get("subscribers_connected"),
        "joins_failed": report.get("joins_failed"),
        "load_test": report,
    }


COLUMNS = [("scenario", "scenario", 12), ("cpu_us_per_packet", "us/pkt", 8),
           ("user_us_per_packet", "user", 6), ("sys_us_per_packet", "sys", 6),
           ("napi_us_per_packet", "napi", 6),
           ("packets_per_s", "pkt/s", 8), ("server_cpu_pct", "cpu%", 6),
           ("loss_pct", "loss%", 7), ("latency_ms_p50", "lat p50", 8),
           ("latency_ms_p99", "lat p99", 8), ("join_ms_p50", "join p50", 9),
           ("join_ms_p99", "join p99", 9), ("rss_kb_per_participant", "KB/part", 8),
           ("subscribers_connected", "subs", 5), ("range", "us/pkt range", 12)]


def table(results):
    lines = [" ".join(f"{h:>{w}}" for _, h, w in COLUMNS)]
    for r in results:
        cells = []
        for key, _, w in COLUMNS:
            v = r.get(key)
            if isinstance(v, float):
                v = round(v, 2)
            cells.append(f"{'-' if v is None else v:>{w}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


# Figures kept from every run of a repeated scenario (`<name>_runs` in the JSON).
PER_RUN = ("cpu_us_per_packet", "join_ms_p50", "join_ms_p99", "latency_ms_p99")


def median_run(runs):
    """The run with the median CPU per packet (its loss, latency and join
    figures are that run's, not medians), with every run's figures."""
    ranked = sorted(runs, key=lambda r: r["cpu_us_per_packet"] or 0)
    mid = dict(ranked[(len(ranked) - 1) // 2])
    for key in PER_RUN:
        mid[f"{key}_runs"] = [r.get(key) for r in runs]
    figures = mid["cpu_us_per_packet_runs"]
    if len(runs) > 1:
        mid["range"] = f"{min(figures)}-{max(figures)}"
    return mid


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "commit": commit, "note": "server and load generator share the machine"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenarios", nargs="*", help="default: all")
    ap.add_argument("--duration", type=float, default=15, help="measurement seconds")
    ap.add_argument("--settle", type=float, default=SETTLE_S,
                    help="seconds between the last join and the measurement (see SETTLE_S)")
    ap.add_argument("--dual-pc", action="store_true", help="two peer connections")
    ap.add_argument("--veth", action="store_true",
                    help="run the load generator in its own network namespace behind a veth "
                         "pair with threaded NAPI, so the subscribers' kernel receive path is "
                         "not on the server's account as it is on loopback (root, iproute2, "
                         "ethtool; see bench/netns.py)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per scenario; the table shows the run with the median CPU per "
                         "packet and the range of all (this VM varies by +-20 %% run to run)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--against", metavar="BINARY",
                    help="also run each scenario on this server binary (another commit's "
                         "release build), alternating runs with this tree's: an A/B "
                         "comparison under the same machine conditions")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", help="JSON path (default bench/results/<date>-<commit>-<names>.json)")
    a = ap.parse_args()
    if a.list:
        for k, (_, _, d) in SCENARIOS.items():
            print(f"{k:12} {d}")
        return 0
    names = a.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)} (see --list)")
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "ferrokit"], cwd=ROOT, check=True)
    if a.veth:
        try:
            netns.setup()
        except netns.SetupError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        results, failed = run_all(a, names)
    finally:
        if a.veth:
            netns.teardown()
    print(table(results))
    if a.against:
        print(f"* = {a.against}")
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "duration_s": a.duration, "settle_s": a.settle,
           "repeat": a.repeat,
           "network": "veth" if a.veth else "loopback",
           "results": results, "failed": failed}
    label = "all" if not a.scenarios else "+".join(names)
    mode = ("-dual-pc" if a.dual_pc else "") + ("-veth" if a.veth else "")
    out = a.out or os.path.join(
        ROOT, "bench", "results",
        f"{datetime.date.today()}-{doc['machine']['commit']}-{label}{mode}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {os.path.relpath(out, ROOT)}", file=sys.stderr)
    return 1 if failed else 0


def run_all(a, names):
    """Every run of every scenario (alternating binaries with --against):
    (median rows, names of scenarios with no successful run)."""
    results, failed = [], []
    binaries = [("this", BIN)] + ([("against", os.path.abspath(a.against))] if a.against else [])
    for n in names:
        runs = {label: [] for label, _ in binaries}
        for i in range(max(1, a.repeat)):
            for label, binary in binaries:
                print(f"running {n} ({i + 1}/{a.repeat}, {label}): {SCENARIOS[n][2]} ...",
                      file=sys.stderr, flush=True)
                try:
                    runs[label].append(
                        run_scenario(n, a.duration, a.dual_pc, binary, a.veth, a.settle))
                except RuntimeError as e:
                    print(f"  failed: {e}", file=sys.stderr)
        for label, binary in binaries:
            if not runs[label]:
                failed.append(n if label == "this" else f"{n} (against)")
                continue
            row = median_run(runs[label])
            if label != "this":
                row["scenario"] = f"{n}*"
                row["binary"] = binary
            results.append(row)
    return results, failed


if __name__ == "__main__":
    sys.exit(main())
