// SIGTERM while a browser is connected: the server must tell the client
// (leave, SERVER_SHUTDOWN) so the SDK reports Disconnected at once, and the
// server must exit 0. One server per test, since each test stops it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, token, roomName } from './lib/harness.mjs';

describe('server shutdown with a browser connected', () => {
  for (const [mode, singlePeerConnection] of [['single', true], ['dual', false]]) {
    it(`browser is told SERVER_SHUTDOWN (${mode} PC)`, { timeout: 60_000 }, async () => {
      const h = await new Harness(`shutdown-${mode}`).start();
      try {
        await h.run(`shutdown-${mode}`, async () => {
          const page = await h.page(`client-${mode}`);
          await page.call('connect', h.server.url, await token('c', roomName('shutdown')), { singlePeerConnection });
          await h.server.stop(); // SIGTERM; throws unless exit 0 within 10 s
          const ev = await waitFor('Disconnected in the browser', async () =>
            (await page.call('events')).find((e) => e.name === 'Disconnected'), { ms: 5_000 });
          // livekit DisconnectReason.SERVER_SHUTDOWN = 3
          assert.equal(ev.reason, 3, `Disconnected reason ${ev.reason}`);
        });
      } finally {
        await h.browser?.close().catch(() => {});
        await h.static?.close();
        if (h.server.proc && !h.server.exit) h.server.proc.kill('SIGKILL');
      }
    });
  }
});
