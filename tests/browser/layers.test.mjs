// Simulcast layer switching: the publisher sends the fake camera at 1280x720
// in three layers (q 320x180, h 640x360, f 1280x720; dynacast on); the
// subscriber (adaptiveStream off) asks for LOW, HIGH, then LOW again with
// RemoteTrackPublication.setVideoQuality, and the size of the frames its
// <video> element presents (requestVideoFrameCallback) must follow.
// Also times the first frame of a new subscriber and each switch.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor } from './lib/harness.mjs';
import { MODES, pubSub, outboundByRid, bytesSentDuring, layerSummary, inboundVideo, figures } from './lib/media.mjs';

// Chrome sends f only once its bandwidth estimate allows (see FINDINGS.md,
// "Congestion control works": up to ~20 s on this VM).
const F_LAYER_MS = 45_000;
const SWITCH_MS = { LOW: 10_000, HIGH: 30_000 };
const WANT = { LOW: [320, 180], HIGH: [1280, 720] };
// The server caps each subscriber's layers by its bandwidth estimate; its
// debug log ("bandwidth cap ... estimate=") explains a missing or flapping f.
process.env.RUST_LOG ??= 'info,ferrokit_server::session::control=debug';
const CAP_HINT = 'see "bandwidth cap" lines in the server log';

describe('simulcast layer switching (setVideoQuality)', () => {
  const h = new Harness('layers');
  before(async () => { await h.start(); });
  after(async () => { await h.stop(); });

  for (const [mode, singlePeerConnection] of MODES) {
    it(`subscriber frames follow LOW -> HIGH -> LOW (${mode} PC)`, { timeout: 180_000 }, () =>
      h.run(`layers-${mode}`, async () => {
        const { pub, sub, video } = await pubSub(h, `layers-${mode}`, {
          singlePeerConnection,
          pubOpts: { dynacast: true },
          subOpts: { adaptiveStream: false },
          // fixed layer sizes: no CPU-driven downscaling on this 2-core VM
          publish: { preset: 'h720', degradationPreference: 'maintain-resolution' },
        });
        const fig = { test: 'layers', mode };

        // time to first frame of a new subscriber
        const first = await waitFor('the first presented frame on the subscriber', async () =>
          (await sub.call('frames', video))?.first, { ms: 20_000 });
        const marks = await sub.call('marks');
        fig.first_frame_from_connect_ms = Math.round(first.t - marks.connectStart);
        fig.first_frame_from_track_subscribed_ms = Math.round(first.t - marks[`subscribed:${video}`]);
        fig.first_frame_size = `${first.w}x${first.h}`;
        assert.ok(first.w > 0 && first.h > 0, `first frame ${first.w}x${first.h}`);

        // the publisher must be sending all three layers before switching
        const tF = Date.now();
        const rids = await waitFor('the publisher to send q, h and f (f at 1280x720)', async () => {
          const o = await outboundByRid(pub);
          if (o.f?.frameWidth !== 1280 || !(o.f?.bytesSent > 0)) return false;
          const sent = await bytesSentDuring(pub, 500);
          return sent.q > 0 && sent.h > 0 && sent.f > 0 && o;
        }, { ms: F_LAYER_MS }).catch(async (e) => {
          throw new Error(`${e.message}; publisher layers: ${await layerSummary(pub)}`);
        });
        fig.f_layer_after_ms = Date.now() - tF;
        assert.deepEqual(
          ['q', 'h', 'f'].map((r) => `${rids[r].frameWidth}x${rids[r].frameHeight}`),
          ['320x180', '640x360', '1280x720'], 'publisher layer sizes');

        fig.switches = [];
        for (const quality of ['LOW', 'HIGH', 'LOW']) {
          const [w, hh] = WANT[quality];
          const at = await sub.call('setVideoQuality', video, quality);
          const hit = await waitFor(`a ${w}x${hh} frame after setVideoQuality(${quality})`, async () => {
            const r = await sub.call('frames', video);
            return r.changes.find((c) => c.t >= at && c.w === w && c.h === hh);
          }, { ms: SWITCH_MS[quality] }).catch(async (e) => {
            const r = await sub.call('frames', video);
            throw new Error(`${e.message}; frame sizes seen: ${JSON.stringify(r.changes.slice(-6))}; `
              + `publisher layers: ${await layerSummary(pub)}`);
          });
          fig.switches.push({ to: quality, ms: Math.round(hit.t - at) });
          // and it stays there: 1.5 s later, frames keep coming at that size
          const n = (await sub.call('frames', video)).count;
          await new Promise((r) => setTimeout(r, 1500));
          const r = await sub.call('frames', video);
          if (r.count < n + 15) {
            const s = await inboundVideo(sub, video);
            const keys = ['framesReceived', 'framesDecoded', 'framesDropped', 'keyFramesDecoded', 'pliCount', 'nackCount', 'packetsLost', 'freezeCount'];
            assert.fail(`only ${r.count - n} frames in 1.5 s after switching to ${quality}; subscriber inbound-rtp `
              + `${JSON.stringify(Object.fromEntries(keys.map((k) => [k, s?.[k]])))}; sizes ${JSON.stringify(r.changes.slice(-4))}; `
              + `publisher layers: ${await layerSummary(pub)} (${CAP_HINT})`);
          }
          const later = r.changes.filter((c) => c.t > hit.t);
          assert.deepEqual(later, [], `size changed again after switching to ${quality} (${CAP_HINT})`);
          assert.deepEqual([r.last.w, r.last.h], [w, hh], `frame size 1.5 s after switching to ${quality} (${CAP_HINT})`);
        }
        figures(fig);
      }));
  }
});
