// livekit-client 2.23.0 in headless Chromium against ferrokit: one page
// publishes the fake camera (720p, simulcast) and microphone, another
// subscribes; the subscriber's receiver stats must show decoded video frames
// with a frame size and audio packets with energy. Both connection modes:
// single peer connection (/rtc/v1, the SDK's default) and dual
// (singlePeerConnection: false, /rtc).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, token, roomName } from './lib/harness.mjs';

const MODES = [
  ['single', true],
  ['dual', false],
];
const LOG_LEVEL = process.env.LK_LOG_LEVEL || 'debug';

/** The inbound-rtp entry of a remote track of `kind`, or undefined. */
function inbound(remote, kind) {
  const t = remote.find((r) => r.kind === kind && r.subscribed);
  return t && t.stats.find((s) => s.type === 'inbound-rtp');
}

/**
 * The m-sections of `kind` the server negotiated with a page: descriptions
 * it sent (applied as remote) and the page's answers to them.
 */
function negotiated(sdps, kind) {
  return sdps
    .filter((d) => d.ok && d.sdp && (d.op === 'setRemoteDescription' || d.type === 'answer'))
    .flatMap((d) => d.sdp.split(/(?=^m=)/m).filter((m) => m.startsWith(`m=${kind} `)));
}

describe('browser SDK media through ferrokit', () => {
  const h = new Harness('media');
  before(async () => { await h.start(); });
  after(async () => { await h.stop(); });

  for (const [mode, singlePeerConnection] of MODES) {
    it(`camera 720p simulcast + microphone, browser to browser (${mode} PC)`, { timeout: 120_000 }, () =>
      h.run(`media-${mode}`, async () => {
        const room = roomName(`media-${mode}`);
        const opts = { singlePeerConnection, logLevel: LOG_LEVEL };
        const pubPage = await h.page(`publisher-${mode}`);
        const subPage = await h.page(`subscriber-${mode}`);

        const pubInfo = await pubPage.call('connect', h.server.url, await token('pub', room), opts);
        assert.match(pubInfo.sid, /^PA_/);
        const published = await pubPage.call('publishCameraAndMic', {});
        assert.match(published.video, /^TR_/);
        assert.match(published.audio, /^TR_/);

        await subPage.call('connect', h.server.url, await token('sub', room), opts);

        // both tracks subscribed on the subscriber
        await waitFor('the subscriber to subscribe to audio and video', async () => {
          const r = await subPage.call('remoteStats');
          return r.filter((t) => t.subscribed).length === 2;
        }, { ms: 20_000 });

        // first sample, then growth: decoded frames with a size, audio packets with energy
        const first = await waitFor('video frames decoded and audio packets received', async () => {
          const r = await subPage.call('remoteStats');
          const v = inbound(r, 'video');
          const a = inbound(r, 'audio');
          return v?.framesDecoded > 0 && a?.packetsReceived > 0 && { v, a };
        }, { ms: 30_000 });
        const later = await waitFor('decoded frames, audio packets and audio energy to grow', async () => {
          const r = await subPage.call('remoteStats');
          const v = inbound(r, 'video');
          const a = inbound(r, 'audio');
          return v && a
            && v.framesDecoded > first.v.framesDecoded + 10
            && a.packetsReceived > first.a.packetsReceived + 25
            && a.totalAudioEnergy > (first.a.totalAudioEnergy || 0)
            && { v, a };
        }, { ms: 30_000 });

        assert.ok(later.v.frameWidth > 0 && later.v.frameHeight > 0,
          `frame size ${later.v.frameWidth}x${later.v.frameHeight}`);

        // The server sends forwarded audio itself after str0m's first packet
        // and corrects str0m's sender reports in flight: the subscriber's
        // remote-outbound-rtp (from those reports, every 5 s) counts what it
        // received, not str0m's one packet.
        const reported = await waitFor('a sender report counting the audio sent', async () => {
          const r = await subPage.call('remoteStats');
          const a = inbound(r, 'audio');
          const t = r.find((x) => x.kind === 'audio' && x.subscribed);
          const ro = t?.stats.find((s) => s.type === 'remote-outbound-rtp');
          return a && ro && ro.packetsSent > 50 && { a, ro };
        }, { ms: 20_000 });
        assert.ok(reported.ro.packetsSent <= reported.a.packetsReceived + 10,
          `reported ${reported.ro.packetsSent} sent, received ${reported.a.packetsReceived}`);
        assert.ok(reported.ro.bytesSent > 50 * 10, `reported ${reported.ro.bytesSent} bytes`);

        // Transport-cc (send-side BWE feedback) on video only, as LiveKit
        // negotiates it: no audio section the server negotiated carries its
        // header extension or feedback, while video sections do.
        const sdps = [...await pubPage.call('sdps'), ...await subPage.call('sdps')];
        const audio = negotiated(sdps, 'audio');
        const video = negotiated(sdps, 'video');
        assert.ok(audio.length >= 2 && video.length >= 2, `${audio.length} audio, ${video.length} video sections`);
        for (const m of audio) {
          assert.doesNotMatch(m, /transport-wide-cc|\stransport-cc/, `audio section with transport-cc:\n${m}`);
        }
        assert.ok(video.some((m) => /transport-wide-cc/.test(m) && / transport-cc/.test(m)),
          'no video section negotiated transport-cc');
        const local = await pubPage.call('localStats');
        const layers = (local.find((t) => t.kind === 'video')?.stats || [])
          .filter((s) => s.type === 'outbound-rtp')
          .map((s) => `${s.rid}:${s.frameWidth}x${s.frameHeight}@${s.framesPerSecond ?? 0}fps sent=${s.packetsSent} limit=${s.qualityLimitationReason} active=${s.active}`);
        console.log(`[${mode}] chromium ${h.browserVersion}: subscriber decodes ${later.v.frameWidth}x${later.v.frameHeight}, `
          + `${later.v.framesDecoded} frames; audio ${later.a.packetsReceived} packets, energy ${later.a.totalAudioEnergy?.toFixed(4)}; `
          + `publisher layers: ${layers.join(' | ')}`);
      }));
  }

  // The server puts the codec asked for in add_track first in its answer
  // (FINDINGS.md #1). VP9 and AV1 are published as SVC (L3T3_KEY); AV1
  // decodes only with the dependency descriptor forwarded (FINDINGS.md #2).
  for (const [mode, singlePeerConnection] of MODES) {
    for (const codec of ['h264', 'vp9', 'av1']) {
      it(`publishing with videoCodec ${codec} sends ${codec} (${mode} PC)`, { timeout: 60_000 }, () =>
        h.run(`codec-${codec}-${mode}`, async () => {
          const room = roomName(`codec-${codec}-${mode}`);
          const opts = { singlePeerConnection, logLevel: LOG_LEVEL };
          const pub = await h.page(`publisher-${codec}-${mode}`);
          const sub = await h.page(`subscriber-${codec}-${mode}`);
          await pub.call('connect', h.server.url, await token('pub', room), opts);
          const p = await pub.call('publishCameraAndMic', { videoCodec: codec, preset: 'h360', audio: false });
          await sub.call('connect', h.server.url, await token('sub', room), opts);
          const got = await waitFor('decoded frames', async () => {
            const r = await sub.call('remoteStats');
            const stats = r.find((t) => t.sid === p.video)?.stats || [];
            const v = stats.find((s) => s.type === 'inbound-rtp');
            return v?.framesDecoded > 5 && { v, codec: stats.find((s) => s.type === 'codec')?.mimeType };
          }, { ms: 20_000 });
          const sent = (await pub.call('localStats')).find((t) => t.kind === 'video')?.stats
            .find((s) => s.type === 'codec')?.mimeType;
          assert.equal(sent?.toLowerCase(), `video/${codec}`, `publisher sends ${sent}`);
          assert.equal(got.codec?.toLowerCase(), `video/${codec}`, `subscriber receives ${got.codec}`);
        }));
    }
  }

  for (const [mode, singlePeerConnection] of MODES) {
    it(`data packets both ways, reliable and lossy (${mode} PC)`, { timeout: 60_000 }, () =>
      h.run(`data-${mode}`, async () => {
        const room = roomName(`data-${mode}`);
        const opts = { singlePeerConnection, logLevel: LOG_LEVEL };
        const a = await h.page(`alice-${mode}`);
        const b = await h.page(`bob-${mode}`);
        await a.call('connect', h.server.url, await token('alice', room), opts);
        await b.call('connect', h.server.url, await token('bob', room), opts);
        // lossy may drop; send until one arrives (bounded)
        await waitFor('reliable data alice -> bob', async () => {
          await a.call('sendData', 'hello bob', true);
          return (await b.call('received')).some((m) => m.text === 'hello bob' && m.from === 'alice');
        }, { ms: 15_000, every: 1000 });
        await waitFor('reliable data bob -> alice', async () => {
          await b.call('sendData', 'hello alice', true);
          return (await a.call('received')).some((m) => m.text === 'hello alice' && m.from === 'bob');
        }, { ms: 15_000, every: 1000 });
        await waitFor('lossy data alice -> bob', async () => {
          await a.call('sendData', 'lossy hi', false);
          return (await b.call('received')).some((m) => m.text === 'lossy hi');
        }, { ms: 15_000, every: 500 });
      }));
  }
});
