// Experiment for FINDINGS.md #1/#2: the page reorders the server's answer so that the
// requested codec comes first (what the proposed server fix does), then reports
// what the publisher sends and what the subscriber decodes.
//   CODECS=vp9:VP9,av1:AV1,h264:H264 node tools/prefer-codec.mjs
import { Harness, token, roomName, waitFor } from '../lib/harness.mjs';
const h = await new Harness('prefer').start();
try {
  for (const [codec, mime] of (process.env.CODECS || 'vp9:VP9,av1:AV1,h264:H264').split(',').map((x) => x.split(':'))) {
    await h.run(`prefer-${codec}`, async () => {
      const room = roomName('prefer');
      const pub = await h.page('pub'); const sub = await h.page('sub');
      await pub.page.evaluate((m) => { window.fkPreferCodec = m; }, mime);
      await pub.call('connect', h.server.url, await token('pub', room), { logLevel: 'info' });
      const p = await pub.call('publishCameraAndMic', { preset: 'h360', videoCodec: codec, audio: false });
      await sub.call('connect', h.server.url, await token('sub', room), { logLevel: 'info' });
      await new Promise((r) => setTimeout(r, 6000)); console.log('PUB', JSON.stringify((await pub.call('localStats')).map((t) => t.stats.filter((s) => s.type !== 'candidate-pair').map((s) => [s.type, s.mimeType, s.packetsSent, s.framesEncoded, s.encoderImplementation, s.scalabilityMode, s.payloadType]))), 'SUB', JSON.stringify((await sub.call('remoteStats')).map((t) => t.stats.map((s) => [s.type, s.mimeType, s.packetsReceived, s.framesReceived, s.framesDecoded, s.keyFramesDecoded, s.pliCount, s.payloadType])))); const v = await waitFor('video', async () => { const t = (await sub.call('remoteStats')).find((t) => t.sid === p.video); const s = t?.stats.find((s) => s.type === 'inbound-rtp'); return s?.framesDecoded > 10 && t; }, { ms: 15000 });
      const ls = await pub.call('localStats');
      const out = ls.find((t) => t.kind === 'video').stats;
      console.log(`${codec}: publisher sends ${out.find((s) => s.type === 'codec')?.mimeType} (${out.filter((s) => s.type === 'outbound-rtp').map((s) => `${s.rid ?? '-'} ${s.frameWidth}x${s.frameHeight} ${s.scalabilityMode ?? ''}`).join(', ')}), subscriber decodes ${v.stats.find((s) => s.type === 'codec')?.mimeType} ${v.stats.find((s) => s.type === 'inbound-rtp').frameWidth}x${v.stats.find((s) => s.type === 'inbound-rtp').frameHeight}`);
    });
  }
} finally { await h.stop(); }
