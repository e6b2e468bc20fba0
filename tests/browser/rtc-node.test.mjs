// @livekit/rtc-node (the Node SDK on libwebrtc, via its FFI) against
// ferrokit: one participant publishes a 440 Hz sine as a microphone track
// and sends data packets, another receives the audio (non-silent frames
// through AudioStream) and the data; both connection modes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Room, RoomEvent, AudioSource, AudioFrame, AudioStream, LocalAudioTrack,
  TrackPublishOptions, TrackSource, TrackKind, dispose,
} from '@livekit/rtc-node';
import { FerrokitServer, waitFor } from './lib/server.mjs';
import { token, roomName } from './lib/token.mjs';

const RATE = 48000;
const FRAME = 480; // 10 ms

/** Feeds a sine into `source` (paced by captureFrame) until stop() is called. */
function sine(source) {
  let running = true;
  let phase = 0;
  const done = (async () => {
    while (running) {
      const data = new Int16Array(FRAME);
      for (let i = 0; i < FRAME; i++) {
        data[i] = Math.round(Math.sin(phase) * 8000);
        phase += (2 * Math.PI * 440) / RATE;
      }
      await source.captureFrame(new AudioFrame(data, RATE, 1, FRAME));
    }
  })();
  return async () => { running = false; await done.catch(() => {}); };
}

describe('Node SDK (@livekit/rtc-node) through ferrokit', () => {
  const server = new FerrokitServer('rtc-node');
  before(async () => { await server.start(); });
  after(async () => {
    await dispose();
    await server.stop();
  });

  for (const [mode, singlePeerConnection] of [['single', true], ['dual', false]]) {
    it(`audio and data between two Node participants (${mode} PC)`, { timeout: 60_000 }, async () => {
      const logStart = server.logSize();
      const room = roomName(`node-${mode}`);
      const alice = new Room();
      const bob = new Room();
      const received = [];
      let stopSine = async () => {};
      let reader;
      try {
        const opts = { autoSubscribe: true, dynacast: false, singlePeerConnection };
        bob.on(RoomEvent.DataReceived, (payload, p, kind, topic) =>
          received.push({ text: new TextDecoder().decode(payload), from: p?.identity, kind, topic, to: 'bob' }));
        alice.on(RoomEvent.DataReceived, (payload, p, kind, topic) =>
          received.push({ text: new TextDecoder().decode(payload), from: p?.identity, kind, topic, to: 'alice' }));
        const subscribed = new Promise((res) => bob.on(RoomEvent.TrackSubscribed, (track, pub, p) => {
          if (track.kind === TrackKind.KIND_AUDIO) res({ track, pub, p });
        }));

        await alice.connect(server.url, await token('alice', room), opts);
        await bob.connect(server.url, await token('bob', room), opts);
        assert.match(alice.localParticipant.sid, /^PA_/);

        const source = new AudioSource(RATE, 1);
        const track = LocalAudioTrack.createAudioTrack('sine', source);
        const pub = await alice.localParticipant.publishTrack(track,
          new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
        assert.match(pub.sid, /^TR_/);
        stopSine = sine(source);

        const sub = await Promise.race([
          subscribed,
          new Promise((_, rej) => setTimeout(() => rej(new Error('bob did not subscribe to the audio within 15 s')), 15_000)),
        ]);
        assert.equal(sub.p.identity, 'alice');

        // count non-silent 10 ms frames bob decodes (bounded)
        const stream = new AudioStream(sub.track, RATE, 1);
        reader = stream.getReader();
        let loud = 0;
        let frames = 0;
        const deadline = Date.now() + 20_000;
        while (loud < 100) {
          if (Date.now() > deadline) throw new Error(`only ${loud} non-silent of ${frames} audio frames within 20 s`);
          const r = await Promise.race([
            reader.read(),
            new Promise((res) => setTimeout(() => res({ timeout: true }), 5_000)),
          ]);
          if (r.timeout) continue;
          if (r.done) throw new Error(`audio stream ended after ${frames} frames`);
          frames++;
          const d = r.value.data;
          let sum = 0;
          for (let i = 0; i < d.length; i++) sum += d[i] * d[i];
          if (Math.sqrt(sum / d.length) > 1000) loud++;
        }

        // data both ways, reliable and lossy (lossy resent until one arrives)
        const got = (to, text) => received.some((m) => m.to === to && m.text === text);
        await waitFor('reliable data alice -> bob', async () => {
          await alice.localParticipant.publishData(new TextEncoder().encode('hi bob'), { reliable: true, topic: 't' });
          return got('bob', 'hi bob');
        }, { ms: 10_000, every: 1000 });
        await waitFor('lossy data bob -> alice', async () => {
          await bob.localParticipant.publishData(new TextEncoder().encode('hi alice'), { reliable: false });
          return got('alice', 'hi alice');
        }, { ms: 10_000, every: 500 });
        const m = received.find((x) => x.to === 'bob' && x.text === 'hi bob');
        assert.equal(m.from, 'alice');
        assert.equal(m.topic, 't');
      } catch (err) {
        err.message += `\n--- server log during the test ---\n${server.logTail(60, logStart)}`;
        throw err;
      } finally {
        await reader?.cancel().catch(() => {});
        await stopSine();
        await alice.disconnect().catch(() => {});
        await bob.disconnect().catch(() => {});
      }
    });
  }
});
