// Inner half of bandwidth.test.mjs, run inside a network namespace
// (lib/netns.mjs) by `ip netns exec NS node lib/bandwidth-run.mjs MODE UDP_PORT`:
// starts the server on UDP_PORT, a publisher page (720p camera, simulcast
// q/h/f) and a subscriber page that wants HIGH, waits for 1280x720 frames,
// then limits the server -> client UDP to LIMIT_KBIT (lib/shaper.mjs, htb on
// lo) and waits for a smaller frame size, holds the limit (frames must keep
// coming, without going back to 1280x720), lifts it and waits for 1280x720
// again. Prints one line `RESULT {json}`; every wait is bounded, and a
// timeout is reported in the result (`failed`), not thrown, so the outer
// test prints the figures. Exits non-zero only if the setup itself fails.
import { readFileSync } from 'node:fs';
import { Harness, runScript, waitFor } from './harness.mjs';
import { pubSub, inboundVideo, layerSummary, sleep } from './media.mjs';
import { Shaper } from './shaper.mjs';

const [mode, udpPort] = process.argv.slice(2);
if (!mode || !udpPort) {
  console.error('usage: bandwidth-run.mjs single|dual UDP_PORT');
  process.exit(2);
}
const num = (name, dflt) => Number(process.env[name] || dflt);
const LIMIT_KBIT = num('FK_BW_LIMIT_KBIT', 700);
const HIGH_MS = num('FK_BW_HIGH_MS', 60_000); // publisher's f needs Chrome's estimate
const DOWN_MS = num('FK_BW_DOWN_MS', 15_000);
const HOLD_MS = num('FK_BW_HOLD_MS', 8_000);
const UP_MS = num('FK_BW_UP_MS', 30_000);
const SETTLE_MS = 4_000;

const h = new Harness(`bandwidth-${mode}`, { server: { udpPort: Number(udpPort) } });
const shaper = new Shaper(Number(udpPort));

/** The subscriber's estimate lines from the server log since byte `from`:
 *  [{ t (ms, server clock), estimate, desired }]. */
function estimates(from, sid) {
  let text = '';
  try { text = readFileSync(h.server.logPath).subarray(from).toString('utf8'); } catch { return []; }
  const out = [];
  for (const line of text.split('\n')) {
    const m = line.match(/^(\S+)\s+TRACE .*bandwidth participant=(\S+) estimate=(\d+) desired=(\d+)/);
    if (m && (!sid || m[2] === sid)) out.push({ t: Date.parse(m[1]), estimate: Number(m[3]), desired: Number(m[4]) });
  }
  return out;
}
const kbps = (list) => list.length ? {
  min: Math.round(Math.min(...list) / 1000), max: Math.round(Math.max(...list) / 1000),
  last: Math.round(list[list.length - 1] / 1000),
} : null;

/** Mean jitter buffer delay (ms) of the frames emitted between two stats. */
const jbMs = (a, b) => {
  const n = (b?.jitterBufferEmittedCount ?? 0) - (a?.jitterBufferEmittedCount ?? 0);
  return n > 0 ? +((1000 * ((b.jitterBufferDelay ?? 0) - (a.jitterBufferDelay ?? 0))) / n).toFixed(1) : null;
};

// A failure here exits non-zero before anything started.
shaper.install();
await runScript(h, `bandwidth-${mode}`, async () => {
  const { pub, sub, video } = await pubSub(h, `bandwidth-${mode}`, {
    singlePeerConnection: mode === 'single',
    pubOpts: { dynacast: true },
    subOpts: { adaptiveStream: false },
    publish: { preset: 'h720', degradationPreference: 'maintain-resolution' },
  });
  const logFrom = h.server.logSize();
  const sizes = async () => (await sub.call('frames', video)) || { changes: [], count: 0 };
  const result = { mode, limit_kbit: LIMIT_KBIT, phases: {} };
  const fail = async (what) => {
    const r = await sizes();
    result.failed = `${what}; frame sizes (page ms:WxH#frame): ${r.changes.slice(-8).map((c) => `${Math.round(c.t)}:${c.w}x${c.h}#${c.n}`).join(' ')}; `
      + `publisher layers: ${await layerSummary(pub)}`;
  };
  const firstAt = async (pred, ms, what) => {
    try {
      return await waitFor(what, async () => (await sizes()).changes.find(pred), { ms, every: 200 });
    } catch {
      await fail(`no ${what} within ${ms} ms`);
      return null;
    }
  };

  // 1. unlimited: HIGH (1280x720) arrives
  const t0 = await sub.call('now');
  const high = await firstAt((c) => c.w === 1280 && c.h === 720, HIGH_MS, '1280x720 frame before the limit');
  if (!high) return console.log(`RESULT ${JSON.stringify(result)}`);
  result.high_after_ms = Math.round(high.t - t0);
  const s0 = await inboundVideo(sub, video);
  await sleep(SETTLE_MS);
  const sidLine = h.server.logTail(4000, 0).match(/participant joined .*participant=(\S+) identity=sub/);
  const sid = sidLine?.[1];
  const sA = await inboundVideo(sub, video);
  const eA = estimates(logFrom, sid);
  result.phases.unlimited = { estimate_kbps: kbps(eA.map((e) => e.estimate)), jitter_buffer_ms: jbMs(s0, sA) };

  // 2. limited: a lower layer within DOWN_MS, then frames keep coming
  const tLimit = await sub.call('now');
  const logLimit = h.server.logSize();
  shaper.limit(LIMIT_KBIT);
  const down = await firstAt((c) => c.t >= tLimit && (c.w < 1280 || c.h < 720), DOWN_MS,
    `frame smaller than 1280x720 after limiting to ${LIMIT_KBIT} kbit/s`);
  if (!down) return console.log(`RESULT ${JSON.stringify({ ...result, shaper: shaper.stats() })}`);
  result.down_ms = Math.round(down.t - tLimit);
  result.down_size = `${down.w}x${down.h}`;
  const sDown = await inboundVideo(sub, video);
  const nDown = (await sizes()).count;
  await sleep(HOLD_MS);
  const held = await sizes();
  const sHeld = await inboundVideo(sub, video);
  result.limited_fps = +((held.count - nDown) / (HOLD_MS / 1000)).toFixed(1);
  result.limited_sizes = held.changes.filter((c) => c.t > down.t).map((c) => `${c.w}x${c.h}`);
  result.limited_size = `${held.last?.w}x${held.last?.h}`;
  const eL = estimates(logLimit, sid);
  result.phases.limited = {
    estimate_kbps: kbps(eL.map((e) => e.estimate)),
    jitter_buffer_ms: jbMs(sDown, sHeld),
    lost: (sHeld?.packetsLost ?? 0) - (sA?.packetsLost ?? 0),
  };
  result.shaper = shaper.stats();

  // 3. lifted: back to 1280x720 within UP_MS
  const tLift = await sub.call('now');
  const logLift = h.server.logSize();
  shaper.lift();
  const up = await firstAt((c) => c.t >= tLift && c.w === 1280 && c.h === 720, UP_MS, '1280x720 frame after lifting the limit');
  const eU = estimates(logLift, sid);
  result.phases.lifted = { estimate_kbps: kbps(eU.map((e) => e.estimate)) };
  if (!up) return console.log(`RESULT ${JSON.stringify(result)}`);
  result.up_ms = Math.round(up.t - tLift);
  const sUp = await inboundVideo(sub, video);
  const nUp = (await sizes()).count;
  await sleep(3000);
  const after = await sizes();
  const sAfter = await inboundVideo(sub, video);
  result.after_fps = +((after.count - nUp) / 3).toFixed(1);
  result.phases.lifted.jitter_buffer_ms = jbMs(sUp, sAfter);
  result.after_size = `${after.last?.w}x${after.last?.h}`;
  console.log(`RESULT ${JSON.stringify(result)}`);
});
