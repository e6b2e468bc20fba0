// Audio RED (RFC 2198) through ferrokit, livekit-client in headless
// Chromium, both connection modes. One page publishes only the fake
// microphone (a beeping tone) with `red: true` and DTX off (packets every
// 20 ms); two pages subscribe to it:
//   - "red": a plain subscriber, which negotiates RED as Chrome does;
//   - "opus": its receivers refuse RED (fk.receiveWithoutRed:
//     setCodecPreferences without audio/red on its receiving audio
//     transceivers, so neither its offers (single PC) nor its answers to the
//     server's offers (dual PC) list red).
// Chrome's stats call a RED stream `audio/opus` (the codec stats of both the
// RED sender and a RED receiver name the primary), so the observable is the
// payload size: a RED packet carries the previous frame again, about twice
// an Opus one. Over the same window of packets:
//   - the server's answer to the publisher has red/48000/2 first on the
//     microphone's m-line, and the publisher's packets are RED: the opus
//     subscriber gets at most 0.65 of their bytes (the primary block);
//   - the opus subscriber negotiated no red and receives Opus on the Opus
//     payload type; both subscribers decode the tone: samples played out
//     keep pace with the packets (960 per packet), under 10% concealed (up
//     to 4.4% seen on the loaded 2-core VM, 0 in most runs), and
//     comparable energy. Relabelling whole RED payloads as Opus (tried on a
//     scratch build) gave full-size packets and no samples at all.
//   - the red subscriber receives the RED payload (bytes per packet as the
//     publisher's), and neither subscriber counts a packet lost on
//     loopback (Chrome's bursts of empty padding packets on the RED stream
//     must reach both; FINDINGS.md 10).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, token, roomName } from './lib/harness.mjs';
import { MODES, LOG_LEVEL, figures } from './lib/media.mjs';

const WINDOW = 200; // packets (20 ms each) measured on both subscribers
const SAMPLES_PER_PACKET = 960; // 20 ms at 48 kHz

/** The m-section of `sdp` with `a=mid:<mid>`. */
function section(sdp, mid) {
  return sdp.split(/(?=^m=)/m).find((m) => m.split(/\r?\n/).includes(`a=mid:${mid}`));
}

/** Encoding (lower case, e.g. `red/48000/2`) per payload type of a section. */
function rtpmaps(sec) {
  return Object.fromEntries([...sec.matchAll(/^a=rtpmap:(\d+) (\S+)/gm)].map((r) => [r[1], r[2].toLowerCase()]));
}

/** The m= line and its payload types, in order. */
const mLine = (sec) => sec.split(/\r?\n/)[0];
const formats = (sec) => mLine(sec).split(' ').slice(3);

/**
 * The page's audio RTP stream (`inbound-rtp` or `outbound-rtp`) that has
 * carried packets, from its peer connections' stats: the stats, its codec
 * stats and its m-section in the last answer applied on that connection
 * (the server's in single PC and to the publisher, the page's to the
 * server's offer in dual PC).
 */
async function audioStream(page, type) {
  const count = type === 'inbound-rtp' ? 'packetsReceived' : 'packetsSent';
  for (const { pc, stats } of await page.call('pcStats')) {
    const s = stats.find((x) => x.type === type && x.kind === 'audio' && x[count] > 0);
    if (!s) continue;
    const answer = (await page.call('sdps')).filter((d) => d.pc === pc && d.ok && d.type === 'answer').at(-1);
    const sec = answer && section(answer.sdp, s.mid);
    return sec && { s, codec: stats.find((x) => x.type === 'codec' && x.id === s.codecId), sec };
  }
  return undefined;
}

describe('audio RED through ferrokit', () => {
  const h = new Harness('red');
  before(async () => { await h.start(); });
  after(async () => { await h.stop(); });
  const results = {};

  for (const [mode, singlePeerConnection] of MODES) {
    it(`RED publisher: RED answered first, Opus decoded by a subscriber without RED (${mode} PC)`, { timeout: 120_000 }, () =>
      h.run(`red-${mode}`, async () => {
        const room = roomName(`red-${mode}`);
        const opts = { singlePeerConnection, logLevel: LOG_LEVEL };
        const pub = await h.page(`publisher-${mode}`);
        const red = await h.page(`red-${mode}`);
        const opus = await h.page(`opus-${mode}`);
        await opus.call('receiveWithoutRed');
        await pub.call('connect', h.server.url, await token('pub', room), opts);
        assert.match(await pub.call('publishMic', { red: true, dtx: false }), /^TR_/);
        await red.call('connect', h.server.url, await token('red', room), opts);
        await opus.call('connect', h.server.url, await token('opus', room), opts);

        const sample = async () => {
          const [p, r, o] = await Promise.all([
            audioStream(pub, 'outbound-rtp'), audioStream(red, 'inbound-rtp'), audioStream(opus, 'inbound-rtp')]);
          return p && r && o && { p, r, o };
        };
        // past the start (jitter buffers filling), then WINDOW more packets
        const a = await waitFor('audio packets on both subscribers', async () => {
          const x = await sample();
          return x && x.r.s.packetsReceived > 50 && x.o.s.packetsReceived > 50 && x;
        }, { ms: 30_000 });
        const b = await waitFor(`${WINDOW} more audio packets on both subscribers`, async () => {
          const x = await sample();
          return x && x.r.s.packetsReceived >= a.r.s.packetsReceived + WINDOW
            && x.o.s.packetsReceived >= a.o.s.packetsReceived + WINDOW && x;
        }, { ms: 20_000 });

        const delta = (k, f) => (b[k].s[f] || 0) - (a[k].s[f] || 0);
        const sent = { m: mLine(b.p.sec), codec: b.p.codec?.mimeType, packets: delta('p', 'packetsSent'),
          nacks: b.p.s.nackCount, retransmitted: b.p.s.retransmittedPacketsSent,
          bytesPerPacket: +(delta('p', 'bytesSent') / delta('p', 'packetsSent')).toFixed(1) };
        const win = (k) => {
          const packets = delta(k, 'packetsReceived');
          return {
            m: mLine(b[k].sec), codec: b[k].codec?.mimeType, pt: b[k].codec?.payloadType,
            packets, bytesPerPacket: +(delta(k, 'bytesReceived') / packets).toFixed(1),
            energy: +delta(k, 'totalAudioEnergy').toFixed(4), samples: delta(k, 'totalSamplesReceived'),
            concealed: delta(k, 'concealedSamples'), lost: b[k].s.packetsLost,
          };
        };
        const w = { pub: sent, red: win('r'), opus: win('o') };
        results[mode] = w;
        figures({ test: 'red', mode, ...w });

        // The publisher: RED first in the server's answer, and it sends RED.
        const pubMaps = rtpmaps(b.p.sec);
        assert.equal(pubMaps[formats(b.p.sec)[0]], 'red/48000/2', `answer to the publisher: ${w.pub.m}`);
        assert.ok(w.opus.bytesPerPacket <= 0.65 * w.pub.bytesPerPacket,
          `the opus subscriber gets ${w.opus.bytesPerPacket} bytes per packet, the publisher sends ${w.pub.bytesPerPacket}: `
          + 'no RED sent, or the redundant block was not stripped');

        // What each subscriber negotiated, and the codec the opus one receives.
        assert.ok(Object.values(rtpmaps(b.r.sec)).includes('red/48000/2'), `red subscriber's section without red: ${w.red.m}`);
        const opusMaps = rtpmaps(b.o.sec);
        assert.ok(!Object.values(opusMaps).some((c) => c.startsWith('red/')), `opus subscriber's section with red:\n${b.o.sec}`);
        assert.equal(w.opus.codec?.toLowerCase(), 'audio/opus', 'opus subscriber receives');
        assert.equal(opusMaps[String(w.opus.pt)], 'opus/48000/2', `opus subscriber's payload type ${w.opus.pt} in ${w.opus.m}`);

        // Both decode the tone over the window.
        for (const k of ['red', 'opus']) {
          const x = w[k];
          assert.ok(x.samples >= 0.8 * SAMPLES_PER_PACKET * x.packets,
            `${k} subscriber played ${x.samples} samples for ${x.packets} packets (undecodable payloads?)`);
          assert.ok(x.concealed <= 0.1 * x.samples, `${k} subscriber concealed ${x.concealed} of ${x.samples} samples`);
          assert.ok(x.energy > 0.05, `${k} subscriber's audio energy grew by ${x.energy} only`);
        }
        const ratio = w.opus.energy / w.red.energy;
        assert.ok(ratio >= 0.5 && ratio <= 2, `energy: opus subscriber ${w.opus.energy}, red subscriber ${w.red.energy}`);
      }));

    it(`RED subscriber receives the RED payload (${mode} PC)`, () => {
      const w = results[mode];
      assert.ok(w, 'no result: the test above failed');
      assert.ok(w.red.bytesPerPacket >= 0.8 * w.pub.bytesPerPacket,
        `red subscriber gets ${w.red.bytesPerPacket} bytes per packet, the publisher sends ${w.pub.bytesPerPacket}`);
    });

    it(`no audio packet counted lost on loopback (${mode} PC)`, () => {
      const w = results[mode];
      assert.ok(w, 'no result: the test above failed');
      assert.ok(w.red.lost === 0 && w.opus.lost === 0, `packetsLost: red subscriber ${w.red.lost}, opus subscriber ${w.opus.lost}`);
    });
  }
});
