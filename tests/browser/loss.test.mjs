// Video under 5% packet loss: the server, the page server and Chromium run
// in a network namespace whose nftables filter drops 5% of the UDP packets
// the server sends (server -> client only; see lib/netns.mjs). The node
// process cannot change namespace, so the browser half runs in a child
// process inside it (lib/loss-run.mjs) and reports its measurements here.
//
// Needs root (ip netns, nft). Elsewhere it fails with the reason, unless
// FK_NO_NETNS=1, which skips it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { HERE } from './lib/server.mjs';
import { MODES, figures } from './lib/media.mjs';
import { LossNetns, netnsUnavailable } from './lib/netns.mjs';

const LOSS_PERCENT = 5;
const WINDOW_S = 20;
const UDP_PORT = 41000; // the namespace is private: any port is free
// The fake camera at 640x360 gives 20 fps here, ~19 fps under 5% loss
// (~16 with one 3 s freeze, see STALL_TODO).
const MIN_FPS = 12;
const MIN_FPS_ANY_SECOND = 5; // no stall of about a second or longer
const SKIP = process.env.FK_NO_NETNS === '1' && 'FK_NO_NETNS=1: network namespace tests disabled';
// Known problems, tolerated unless FK_STRICT=1 (see FINDINGS.md 8):
// in some runs (dual PC mostly) the subscriber stops decoding for ~3 s right
// after a bandwidth-driven layer switch, until Chrome's own keyframe timeout.
const STALL_TODO = !process.env.FK_STRICT && 'FINDINGS.md 8: ~3 s freeze after a layer switch under loss (intermittent)';
// The server evaluates connection quality every 5 s; under 5% loss a 5 s
// window is sometimes still judged excellent.
const QUALITY_TODO = !process.env.FK_STRICT && 'FINDINGS.md 6: quality under loss is noisy (tolerated unless FK_STRICT=1)';

describe(`video under ${LOSS_PERCENT}% server->client packet loss`, () => {
  for (const [mode] of MODES) {
    let result = null;

    it(`subscriber keeps decoding, NACKs are answered (${mode} PC)`, { skip: SKIP, timeout: 240_000 }, async () => {
      const why = netnsUnavailable();
      if (why) throw new Error(`cannot create the lossy network namespace: ${why}. Set FK_NO_NETNS=1 to skip.`);
      const ns = new LossNetns(mode, UDP_PORT, LOSS_PERCENT);
      try {
        ns.create();
        const run = await ns.exec(
          [process.execPath, join(HERE, 'lib/loss-run.mjs'), mode, String(UDP_PORT), String(WINDOW_S)],
          { env: process.env, ms: 200_000 },
        );
        const line = run.stdout.split('\n').find((l) => l.startsWith('RESULT '));
        if (run.code !== 0 || !line) {
          throw new Error(`loss-run.mjs exited ${run.code ?? run.signal}:\n${run.stderr.slice(-6000)}`);
        }
        result = JSON.parse(line.slice('RESULT '.length));
        const c = ns.counters();
        result.filter = { ...c, dropped_pct: +(100 * c.dropped / Math.max(1, c.all)).toFixed(2) };
        figures({
          test: 'loss', mode, loss_pct: LOSS_PERCENT, fps_under_loss: +result.fps.toFixed(1),
          min_fps_1s: Math.min(...result.per_second), size: result.size, nacks: result.nacks, plis: result.plis,
          retransmitted: result.retransmitted_received, packets_lost: result.packets_lost,
          frames_dropped: result.frames_dropped, freeze_count: result.freeze_count, freezes_s: result.freezes_s,
          window: result.window, filter: result.filter, sub_quality: result.sub_quality,
          window_start_t: result.window_start_t, frame_changes: result.frame_changes, stream_states: result.stream_states,
        });
      } finally {
        ns.destroy();
      }

      // the filter did drop about 5% of the server's packets
      assert.ok(result.filter.dropped > 0, `nothing dropped: ${JSON.stringify(result.filter)}`);
      assert.ok(result.filter.dropped_pct > 2 && result.filter.dropped_pct < 10,
        `dropped ${result.filter.dropped_pct}% of the server's UDP packets`);
      // video keeps decoding
      assert.ok(result.fps >= MIN_FPS, `${result.fps.toFixed(1)} fps decoded under loss (< ${MIN_FPS}); `
        + `per second frames/lost/nacks/retransmitted/plis/freezes: ${result.timeline}`);
      // losses were seen and repaired by retransmission
      assert.ok(result.window.lost > 0, `no packet lost during the window: ${JSON.stringify(result.window)}`);
      assert.ok(result.window.nacks > 0, `no NACK sent during the window: ${JSON.stringify(result.window)}`);
      assert.ok(result.window.retransmitted > 0,
        `no retransmission received during the window (server ignores NACKs?): ${JSON.stringify(result.window)}`);
    });

    it(`no stall: every second has frames (${mode} PC)`, { skip: SKIP, todo: STALL_TODO }, () => {
      assert.ok(result, 'no result: the loss test above failed');
      assert.ok(Math.min(...result.per_second) >= MIN_FPS_ANY_SECOND,
        `a second with fewer than ${MIN_FPS_ANY_SECOND} frames; per second frames/lost/nacks/retransmitted/plis/freezes: `
        + `${result.timeline}; frame sizes (page s:WxH#frame): ${result.frame_changes.join(' ')}; window from ${result.window_start_t} s`);
    });

    it(`subscriber's connection quality drops below excellent (${mode} PC)`, { skip: SKIP, todo: QUALITY_TODO }, () => {
      assert.ok(result, 'no result: the loss test above failed');
      // within ~15 s of connecting, the subscriber hears that its own quality
      // is good or poor (5% loss is not excellent)
      const own = result.sub_quality.filter((e) => e.who === 'sub');
      const worse = own.find((e) => (e.q === 'good' || e.q === 'poor') && e.t - result.connect_t <= 15);
      assert.ok(worse, `subscriber's own ConnectionQualityChanged events: ${JSON.stringify(own)}`);
    });
  }
});
