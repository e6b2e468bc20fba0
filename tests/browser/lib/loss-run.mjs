// Inner half of loss.test.mjs, run inside the lossy network namespace
// (lib/netns.mjs) by
// `ip netns exec NS node lib/loss-run.mjs MODE UDP_PORT SECONDS [SWITCH_S]`:
// starts the server on UDP_PORT (the port the filter matches), a publisher
// page (camera 640x360, simulcast) and a subscriber page, waits for video to
// decode, then samples the subscriber's inbound video once a second for
// SECONDS. With SWITCH_S > 0, the subscriber also alternates
// setVideoQuality LOW / HIGH every SWITCH_S seconds of the window (a
// simulcast layer switch under loss, FINDINGS.md 8). Prints one line
// `RESULT {json}` for the outer test to assert on; exits non-zero (with
// diagnostics on stderr) if the setup itself fails.
import { Harness, runScript, waitFor } from './harness.mjs';
import { pubSub, inboundVideo, outboundByRid, eventsNamed, decodes, sleep } from './media.mjs';

const [mode, udpPort, seconds = '20', switchS = '0'] = process.argv.slice(2);
if (!mode || !udpPort) {
  console.error('usage: loss-run.mjs single|dual UDP_PORT [SECONDS] [SWITCH_S]');
  process.exit(2);
}

const h = new Harness(`loss-${mode}`, { server: { udpPort: Number(udpPort) } });
await runScript(h, `loss-${mode}`, async () => {
  const { pub, sub, video } = await pubSub(h, `loss-${mode}`, {
    singlePeerConnection: mode === 'single',
    subOpts: { adaptiveStream: false },
    publish: { preset: 'h360' },
  });
  await decodes(sub, video, { n: 30, ms: 30_000 });
  const marks = await sub.call('marks');
  const t0 = await sub.call('now');

  // once a second: frames decoded, from the stats
  const samples = [];
  const start = await inboundVideo(sub, video);
  let prev = start;
  const began = Date.now();
  // layer switches requested by the subscriber (page clock, s)
  const switches = [];
  const every = Number(switchS);
  for (let i = 0; i < Number(seconds); i++) {
    if (every > 0 && i % every === 0) {
      const quality = (i / every) % 2 === 0 ? 'LOW' : 'HIGH';
      const t = await sub.call('setVideoQuality', video, quality);
      switches.push(`${(t / 1000).toFixed(2)}:${quality}`);
    }
    await sleep(Math.max(0, began + (i + 1) * 1000 - Date.now()));
    const s = await inboundVideo(sub, video);
    const d = (k) => (s[k] ?? 0) - (prev[k] ?? 0);
    samples.push({ frames: d('framesDecoded'), lost: d('packetsLost'), nacks: d('nackCount'),
      rtx: d('retransmittedPacketsReceived'), plis: d('pliCount'), freezes: d('freezeCount') });
    prev = s;
  }
  const elapsed = (Date.now() - began) / 1000;
  const end = prev;
  const delta = (k) => (end[k] ?? 0) - (start[k] ?? 0);
  const out = await outboundByRid(pub);
  const quality = (page) => eventsNamed(page, 'ConnectionQualityChanged').then((l) => l.map((e) => ({ t: e.t, who: e.who, q: e.quality })));
  const result = {
    mode,
    window_s: elapsed,
    fps: delta('framesDecoded') / elapsed,
    per_second: samples.map((s) => s.frames),
    // per second: frames/lost/nacks/retransmitted/plis/freezes
    timeline: samples.map((s) => `${s.frames}/${s.lost}/${s.nacks}/${s.rtx}/${s.plis}/${s.freezes}`).join(' '),
    size: `${end.frameWidth}x${end.frameHeight}`,
    // totals since the subscription (loss applies from the start)
    packets_received: end.packetsReceived,
    packets_lost: end.packetsLost,
    nacks: end.nackCount,
    plis: end.pliCount,
    firs: end.firCount,
    retransmitted_received: end.retransmittedPacketsReceived,
    frames_dropped: end.framesDropped,
    freeze_count: end.freezeCount,
    freezes_s: end.totalFreezesDuration,
    // during the window
    window: { nacks: delta('nackCount'), plis: delta('pliCount'), lost: delta('packetsLost'),
      retransmitted: delta('retransmittedPacketsReceived'), freezes: delta('freezeCount') },
    publisher: Object.fromEntries(Object.entries(out).map(([rid, s]) => [rid, {
      size: `${s.frameWidth}x${s.frameHeight}`, nacks: s.nackCount, plis: s.pliCount, retransmitted: s.retransmittedPacketsSent }])),
    // seconds on the page clock since the subscriber's connect() started
    connect_t: +(marks.connectStart / 1000).toFixed(2),
    window_start_t: +(t0 / 1000).toFixed(2),
    // size changes of the presented frames (layer switches), page clock, s
    frame_changes: (await sub.call('frames', video)).changes.map((c) => `${(c.t / 1000).toFixed(2)}:${c.w}x${c.h}#${c.n}`),
    switches,
    stream_states: (await eventsNamed(sub, 'TrackStreamStateChanged')).map((e) => `${e.t}:${e.state}`),
    sub_quality: await quality(sub),
    pub_quality: await quality(pub),
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
});
