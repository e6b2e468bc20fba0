// Exploration: prints the SDPs a publisher page applied when publishing
// `codec` (and the codec its sender uses).  node tools/sdp.mjs [single|dual] [vp9]
import { Harness, token, roomName, waitFor } from '../lib/harness.mjs';
const [mode = 'single', codec = 'vp9', who = 'pub'] = process.argv.slice(2);
const opts = { singlePeerConnection: mode === 'single', logLevel: 'info' };
const h = await new Harness(`sdp-${mode}`).start();
try {
  await h.run(`sdp-${mode}`, async () => {
    const room = roomName('sdp');
    const pub = await h.page('pub'); const sub = await h.page('sub');
    await pub.call('connect', h.server.url, await token('pub', room), opts);
    const p = await pub.call('publishCameraAndMic', { videoCodec: codec, preset: 'h360' });
    await sub.call('connect', h.server.url, await token('sub', room), opts);
    await waitFor('sub decodes', async () => {
      const r = await sub.call('remoteStats');
      return r.find((x) => x.sid === p.video)?.stats.find((s) => s.type === 'inbound-rtp')?.framesDecoded > 5;
    }, { ms: 15000 });
    const page = who === 'pub' ? pub : sub;
    for (const d of await page.call('sdps')) {
      console.log(`===== pc ${d.pc} ${d.op} ${d.type} ok=${d.ok} ${d.error || ''}\n${d.sdp}`);
    }
    const ls = await pub.call('localStats');
    console.log('publisher codecs:', JSON.stringify(ls.map((t) => t.stats.filter((s) => s.type === 'codec'))));
  });
} finally { await h.stop(); }
