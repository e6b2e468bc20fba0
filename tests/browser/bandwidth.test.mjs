// The subscriber's bandwidth estimate drives its simulcast layer: the
// server, the page server and Chromium run in a network namespace where the
// server -> client UDP goes through a shaper (lib/shaper.mjs: htb on lo,
// the kernel has no netem). With the 720p camera in three layers and the
// subscriber wanting HIGH, a 700 kbit/s limit must bring its frames below
// 1280x720 within DOWN_MS while video keeps decoding (and does not go back
// to 1280x720 while limited); lifting the limit must bring 1280x720 back
// within UP_MS. The browser half runs inside the namespace
// (lib/bandwidth-run.mjs). Prints FIGURES with the times, the server's
// estimate per phase (from its trace log) and the jitter buffer delay.
//
// Needs root (ip netns, tc, nft). Elsewhere it fails with the reason,
// unless FK_NO_NETNS=1, which skips it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { HERE } from './lib/server.mjs';
import { MODES, figures } from './lib/media.mjs';
import { LossNetns, netnsUnavailable } from './lib/netns.mjs';

const UDP_PORT = 41000; // the namespace is private: any port is free
const DOWN_MS = 15_000;
const UP_MS = 30_000;
const MIN_FPS = 8; // the fake camera gives 20-30 fps; a stall gives ~0
const SKIP = process.env.FK_NO_NETNS === '1' && 'FK_NO_NETNS=1: network namespace tests disabled';
// the estimate per control tick ("bandwidth ... estimate=") is a trace line
process.env.RUST_LOG ??= 'info,ferrokit_server::session::control=trace';

describe('bandwidth estimate drives the simulcast layer', () => {
  for (const [mode] of MODES) {
    it(`a 700 kbit/s limit lowers the layer, lifting it restores HIGH (${mode} PC)`, { skip: SKIP, timeout: 240_000 }, async () => {
      const why = netnsUnavailable();
      if (why) throw new Error(`cannot create the network namespace: ${why}. Set FK_NO_NETNS=1 to skip.`);
      const ns = new LossNetns(`bw${mode}`, UDP_PORT, 0);
      let result;
      try {
        ns.create();
        const run = await ns.exec(
          [process.execPath, join(HERE, 'lib/bandwidth-run.mjs'), mode, String(UDP_PORT)],
          { env: { ...process.env, FK_BW_DOWN_MS: String(DOWN_MS), FK_BW_UP_MS: String(UP_MS) }, ms: 200_000 },
        );
        const line = run.stdout.split('\n').find((l) => l.startsWith('RESULT '));
        if (run.code !== 0 || !line) {
          throw new Error(`bandwidth-run.mjs exited ${run.code ?? run.signal}:\n${run.stderr.slice(-6000)}`);
        }
        result = JSON.parse(line.slice('RESULT '.length));
        figures({ test: 'bandwidth', ...result });
      } finally {
        ns.destroy();
      }
      assert.ok(!result.failed, result.failed);
      assert.ok(result.down_ms <= DOWN_MS, `lower layer after ${result.down_ms} ms`);
      assert.ok(result.limited_fps >= MIN_FPS, `${result.limited_fps} fps while limited (sizes ${result.limited_sizes})`);
      assert.ok(!result.limited_sizes.includes('1280x720'),
        `back to 1280x720 while limited: sizes ${result.limited_sizes.join(' ')}`);
      assert.ok(result.up_ms <= UP_MS, `1280x720 again after ${result.up_ms} ms`);
      assert.ok(result.after_fps >= MIN_FPS, `${result.after_fps} fps after lifting the limit`);
    });
  }
});
