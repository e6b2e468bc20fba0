// Server signals the browser SDK turns into room events:
//   - stream_state_update: the publisher stops sending every layer without
//     any signalling (RTCRtpSender.setParameters, every encoding inactive);
//     the subscriber's RemoteTrack.streamState goes `paused`
//     (TrackStreamStateChanged), then `active` when the layers come back;
//   - connection_quality: both pages hear ConnectionQualityChanged for
//     themselves and for the other participant, `excellent` or `good`, soon
//     after publishing (the server evaluates every 5 s). Both publish (camera
//     and microphone), since a participant hears the quality of those it
//     subscribes to; a publisher that stops sending a simulcast layer a
//     subscriber wants drops below `excellent`, and recovers when it resumes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor } from './lib/harness.mjs';
import { MODES, pubSub, decodes, eventsNamed, figures, bytesSentDuring, layerSummary } from './lib/media.mjs';

const STATE_MS = 5_000; // "within ~3 s", plus slack for this VM
const QUALITY_MS = 15_000;
const LAYER_GONE_MS = 20_000;
const F_LAYER_MS = 60_000; // Chrome's estimate must allow the 720p layer

describe('stream state and connection quality signals', () => {
  const h = new Harness('signals');
  before(async () => { await h.start(); });
  after(async () => { await h.stop(); });

  for (const [mode, singlePeerConnection] of MODES) {
    it(`streamState follows the publisher's packets: paused, then active (${mode} PC)`, { timeout: 90_000 }, () =>
      h.run(`stream-state-${mode}`, async () => {
        const { pub, sub, video } = await pubSub(h, `stream-state-${mode}`, {
          singlePeerConnection,
          subOpts: { adaptiveStream: false },
          publish: { preset: 'h360' },
        });
        await decodes(sub, video, { n: 10 });
        assert.equal(await sub.call('streamState', video), 'active', 'streamState while decoding');
        const fig = { test: 'stream_state', mode };

        const stateEvent = (state) => eventsNamed(sub, 'TrackStreamStateChanged', (e) => e.sid === video && e.state === state);
        const t0 = Date.now();
        const offAt = (await pub.call('setSenderActive', false)) / 1000;
        await waitFor(`streamState "paused" within ${STATE_MS} ms of the publisher going silent`, async () =>
          (await sub.call('streamState', video)) === 'paused' && (await stateEvent('paused')).length > 0,
        { ms: STATE_MS }).catch(async (e) => {
          const evs = await eventsNamed(sub, 'TrackStreamStateChanged');
          throw new Error(`${e.message}; streamState ${await sub.call('streamState', video)}; events ${JSON.stringify(evs)}`);
        });
        fig.paused_after_ms = Date.now() - t0;

        const t1 = Date.now();
        await pub.call('setSenderActive', true);
        await waitFor(`streamState "active" within ${STATE_MS} ms of the layers coming back`, async () =>
          (await sub.call('streamState', video)) === 'active',
        { ms: STATE_MS }).catch(async (e) => {
          const evs = await eventsNamed(sub, 'TrackStreamStateChanged');
          throw new Error(`${e.message}; streamState ${await sub.call('streamState', video)}; events ${JSON.stringify(evs)}`);
        });
        fig.active_after_ms = Date.now() - t1;
        await decodes(sub, video, { n: 10 });
        const evs = (await eventsNamed(sub, 'TrackStreamStateChanged')).map((e) => e.state);
        assert.deepEqual(evs, ['paused', 'active'], `TrackStreamStateChanged events (publisher off at t=${offAt.toFixed(2)})`);
        figures(fig);
      }));

    it(`connection quality reported for both participants (${mode} PC)`, { timeout: 90_000 }, () =>
      h.run(`quality-${mode}`, async () => {
        const { pub, sub, video } = await pubSub(h, `quality-${mode}`, {
          singlePeerConnection,
          subOpts: { adaptiveStream: false },
          publish: { preset: 'h360', audio: true },
        });
        const t0 = Date.now();
        await sub.call('publishMic');
        await decodes(sub, video, { n: 5 });
        const GOOD = ['excellent', 'good'];
        const heard = async (page, who) => (await eventsNamed(page, 'ConnectionQualityChanged', (e) => e.who === who)).at(-1);
        const all = async () => {
          const r = { pub_self: await heard(pub, 'pub'), pub_remote: await heard(pub, 'sub'),
            sub_self: await heard(sub, 'sub'), sub_remote: await heard(sub, 'pub') };
          return Object.values(r).every((e) => e && GOOD.includes(e.quality)) && r;
        };
        const got = await waitFor(`ConnectionQualityChanged (excellent or good) for self and remote on both pages within ${QUALITY_MS} ms`,
          all, { ms: QUALITY_MS, every: 500 }).catch(async (e) => {
          const q = async (p) => JSON.stringify(await eventsNamed(p, 'ConnectionQualityChanged'));
          throw new Error(`${e.message}; publisher page: ${await q(pub)}; subscriber page: ${await q(sub)}`);
        });
        figures({ test: 'connection_quality', mode, within_ms: Date.now() - t0,
          qualities: Object.fromEntries(Object.entries(got).map(([k, e]) => [k, `${e.quality}@${e.t}s`])) });
      }));

    it(`publisher dropping a wanted layer lowers its connection quality (${mode} PC)`, { timeout: 180_000 }, () =>
      h.run(`quality-layer-${mode}`, async () => {
        const { pub, sub, video } = await pubSub(h, `quality-layer-${mode}`, {
          singlePeerConnection,
          subOpts: { adaptiveStream: false },
        });
        await decodes(sub, video, { n: 5 });
        const last = async (page, who) => (await eventsNamed(page, 'ConnectionQualityChanged', (e) => e.who === who)).at(-1)?.quality;
        // The server only misses a layer it has seen: f must be flowing
        // first (Chrome sends it once its own estimate allows).
        await waitFor(`the publisher to send f within ${F_LAYER_MS} ms`,
          async () => (await bytesSentDuring(pub, 500)).f > 0, { ms: F_LAYER_MS })
          .catch(async (e) => { throw new Error(`${e.message}; publisher layers: ${await layerSummary(pub)}`); });
        await waitFor(`publisher excellent within ${QUALITY_MS} ms`, async () => (await last(pub, 'pub')) === 'excellent',
          { ms: QUALITY_MS, every: 500 });
        // The subscriber takes HIGH (the default), so f is wanted; the
        // publisher stops sending it without telling anyone.
        const t0 = Date.now();
        await pub.call('setSenderActive', false, 'f');
        const lowered = async () => {
          const self = await last(pub, 'pub');
          const seen = await last(sub, 'pub');
          return self !== 'excellent' && seen !== 'excellent' && { self, seen };
        };
        // Two 5 s windows at most: the first may still hold f packets.
        const got = await waitFor(`publisher below excellent (self and at the subscriber) within ${LAYER_GONE_MS} ms of dropping f`,
          lowered, { ms: LAYER_GONE_MS, every: 500 }).catch(async (e) => {
          throw new Error(`${e.message}; publisher page: ${JSON.stringify(await eventsNamed(pub, 'ConnectionQualityChanged'))}; `
            + `publisher layers: ${await layerSummary(pub)}`);
        });
        const down_ms = Date.now() - t0;
        const t1 = Date.now();
        await pub.call('setSenderActive', true, 'f');
        await waitFor(`publisher excellent again within ${QUALITY_MS} ms of resuming f`,
          async () => (await last(pub, 'pub')) === 'excellent', { ms: QUALITY_MS, every: 500 });
        figures({ test: 'quality_missing_layer', mode, down_ms, quality: got, back_ms: Date.now() - t1 });
      }));
  }
});
