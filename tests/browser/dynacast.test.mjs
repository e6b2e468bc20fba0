// Dynacast (`subscribed_quality_update`): with `dynacast: true`, the
// publisher's SDK turns simulcast encodings on and off as the server says.
// The server asks for the layers some subscriber wants: increases at once,
// layers nobody wants are disabled after about 2 s.
//   - nobody subscribed: every layer pauses; a subscriber joins: they resume
//     and it decodes;
//   - the only subscriber asks for LOW (adaptiveStream off): h and f stop,
//     q keeps going; HIGH again: h and f resume.
// "Stopped" is checked twice: the encoding's `active` in
// sender.getParameters() (what the SDK set) and bytesSent not growing.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, token } from './lib/harness.mjs';
import { MODES, pubSub, bytesSentDuring, layerSummary, decodes, figures } from './lib/media.mjs';

const OFF_MS = 8_000; // ~2 s debounce + the SDK + slack for this VM
const ON_MS = 5_000; // increases are immediate

/** Waits until the camera encodings' `active` flags are `want` ({ q, h, f } of booleans). */
async function encodingsBecome(pub, want, ms, what) {
  const t0 = Date.now();
  await waitFor(what, async () => {
    const enc = await pub.call('senderEncodings');
    return Object.entries(want).every(([rid, on]) => enc.find((e) => (e.rid || 'q') === rid)?.active === on);
  }, { ms }).catch(async (e) => {
    throw new Error(`${e.message}; encodings ${JSON.stringify(await pub.call('senderEncodings'))}; layers: ${await layerSummary(pub)}`);
  });
  return Date.now() - t0;
}

/** Asserts which layers send bytes during one second. */
async function assertSending(pub, want, when) {
  const sent = await bytesSentDuring(pub, 1000);
  for (const [rid, on] of Object.entries(want)) {
    if (on) assert.ok(sent[rid] > 0, `${when}: layer ${rid} sent nothing in 1 s (${JSON.stringify(sent)})`);
    else assert.equal(sent[rid] || 0, 0, `${when}: layer ${rid} still sends (${JSON.stringify(sent)})`);
  }
}

describe('dynacast: publisher layers follow what subscribers want', () => {
  const h = new Harness('dynacast');
  before(async () => { await h.start(); });
  after(async () => { await h.stop(); });

  for (const [mode, singlePeerConnection] of MODES) {
    it(`layers pause without subscribers and follow the subscriber's quality (${mode} PC)`, { timeout: 150_000 }, () =>
      h.run(`dynacast-${mode}`, async () => {
        const { room, pub, sub, video, subOpts } = await pubSub(h, `dynacast-${mode}`, {
          singlePeerConnection,
          pubOpts: { dynacast: true },
          subOpts: { adaptiveStream: false },
          publish: { preset: 'h720', degradationPreference: 'maintain-resolution' },
          subscriber: false,
        });
        const fig = { test: 'dynacast', mode };
        const ALL_OFF = { q: false, h: false, f: false };

        // nobody subscribed: every layer pauses
        fig.all_off_without_subscriber_ms = await encodingsBecome(pub, ALL_OFF, 3_000 + OFF_MS,
          'every encoding inactive with no subscriber');
        await assertSending(pub, ALL_OFF, 'no subscriber');

        // a subscriber joins (HIGH by default): every layer resumes, it decodes
        const tJoin = Date.now();
        await sub.call('connect', h.server.url, await token('sub', room), subOpts);
        await encodingsBecome(pub, { q: true, h: true, f: true }, ON_MS + 5_000, 'every encoding active after a subscriber joined');
        fig.all_on_after_join_ms = Date.now() - tJoin;
        await decodes(sub, video, { n: 10, ms: 20_000 });
        await assertSending(pub, { q: true, h: true }, 'subscriber joined');

        // LOW: h and f stop, q goes on
        await sub.call('setVideoQuality', video, 'LOW');
        fig.hf_off_after_low_ms = await encodingsBecome(pub, { q: true, h: false, f: false }, OFF_MS,
          'h and f inactive after the subscriber asked for LOW');
        await assertSending(pub, { q: true, h: false, f: false }, 'subscriber wants LOW');
        await decodes(sub, video, { n: 10, ms: 10_000 });

        // HIGH: h and f resume
        await sub.call('setVideoQuality', video, 'HIGH');
        fig.hf_on_after_high_ms = await encodingsBecome(pub, { q: true, h: true, f: true }, ON_MS,
          'h and f active after the subscriber asked for HIGH');
        await assertSending(pub, { q: true, h: true }, 'subscriber wants HIGH');
        figures(fig);
      }));
  }
});
