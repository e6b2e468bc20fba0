// Exploration (not a test): runs browser scenarios one after another and
// reports OK / FAIL for each, with the reason.
//   node tools/scenarios.mjs [single|dual] [scenario ...]
import { Harness, token, roomName, waitFor } from '../lib/harness.mjs';

const [mode = 'single', ...only] = process.argv.slice(2);
const opts = { singlePeerConnection: mode === 'single', logLevel: process.env.LK_LOG_LEVEL || 'debug' };
const h = await new Harness(`scen-${mode}`).start();

async function decoding(sub, sid, ms = 15000) {
  const frames = async () => {
    const r = await sub.call('remoteStats');
    const t = r.find((x) => x.sid === sid);
    const s = t && t.stats.find((x) => x.type === 'inbound-rtp');
    return s ? (s.kind === 'video' ? s.framesDecoded || 0 : s.packetsReceived || 0) : 0;
  };
  const f0 = await waitFor(`media of ${sid}`, async () => (await frames()) || false, { ms });
  await waitFor(`media of ${sid} to grow`, async () => (await frames()) > f0 + 5, { ms });
}

const S = {
  async lateSubscribe() {}, // covered by media.test.mjs
  async publishAfterSubscriberJoined() {
    const room = roomName('late');
    const sub = await h.page('sub'); const pub = await h.page('pub');
    await sub.call('connect', h.server.url, await token('sub', room), opts);
    await pub.call('connect', h.server.url, await token('pub', room), opts);
    const p = await pub.call('publishCameraAndMic', {});
    await decoding(sub, p.video); await decoding(sub, p.audio);
  },
  async codecH264() { await codec('h264'); },
  async codecVP9() { await codec('vp9'); },
  async codecAV1() { await codec('av1'); },
  async muteUnmute() {
    const room = roomName('mute');
    const pub = await h.page('pub'); const sub = await h.page('sub');
    await pub.call('connect', h.server.url, await token('pub', room), opts);
    const p = await pub.call('publishCameraAndMic', { preset: 'h360' });
    await sub.call('connect', h.server.url, await token('sub', room), opts);
    await decoding(sub, p.video);
    await pub.call('setCameraMuted', true);
    await waitFor('subscriber sees mute', async () => (await sub.call('events')).some((e) => e.name === 'TrackMuted'), { ms: 5000 }).catch(() => {});
    await new Promise((r) => setTimeout(r, 2000));
    await pub.call('setCameraMuted', false);
    await decoding(sub, p.video);
  },
  async republish() {
    const room = roomName('repub');
    const pub = await h.page('pub'); const sub = await h.page('sub');
    await pub.call('connect', h.server.url, await token('pub', room), opts);
    await sub.call('connect', h.server.url, await token('sub', room), opts);
    const p1 = await pub.call('publishCameraAndMic', { preset: 'h360' });
    await decoding(sub, p1.video);
    await pub.call('unpublishAll');
    await waitFor('unsubscribed', async () => (await sub.call('events')).filter((e) => e.name === 'TrackUnsubscribed').length >= 2, { ms: 10000 });
    const p2 = await pub.call('publishCameraAndMic', { preset: 'h360' });
    await decoding(sub, p2.video); await decoding(sub, p2.audio);
  },
  async manyPublishers() {
    // 4 video + 4 audio tracks toward one subscriber: more than the 3+3 pre-created slots
    const room = roomName('many');
    const sub = await h.page('sub');
    await sub.call('connect', h.server.url, await token('sub', room), opts);
    const pubs = [];
    for (let i = 0; i < 4; i++) {
      const p = await h.page(`pub${i}`);
      await p.call('connect', h.server.url, await token(`pub${i}`, room), opts);
      pubs.push(await p.call('publishCameraAndMic', { preset: 'h180', simulcast: false }));
    }
    for (const p of pubs) { await decoding(sub, p.video, 20000); await decoding(sub, p.audio, 20000); }
  },
  async publisherLeaves() {
    const room = roomName('leave');
    const pub = await h.page('pub'); const sub = await h.page('sub');
    await pub.call('connect', h.server.url, await token('pub', room), opts);
    await sub.call('connect', h.server.url, await token('sub', room), opts);
    await pub.call('publishCameraAndMic', { preset: 'h180' });
    await waitFor('subscribed', async () => (await sub.call('events')).some((e) => e.name === 'TrackSubscribed'), { ms: 10000 });
    await pub.call('disconnect');
    await waitFor('ParticipantDisconnected', async () => (await sub.call('events')).some((e) => e.name === 'ParticipantDisconnected'), { ms: 5000 });
  },
  async signalReconnect() { await reconnect('signal-reconnect'); },
  async fullReconnect() { await reconnect('full-reconnect'); },
  async resumeMedia() { await reconnect('resume-reconnect'); },
  async adaptivePauseResume() {
    const room = roomName('adaptive');
    const o = { ...opts, adaptiveStream: true, dynacast: true };
    const pub = await h.page('pub'); const sub = await h.page('sub');
    await pub.call('connect', h.server.url, await token('pub', room), o);
    const p = await pub.call('publishCameraAndMic', { preset: 'h720' });
    await sub.call('connect', h.server.url, await token('sub', room), o);
    await decoding(sub, p.video);
    const dec = async () => (await sub.call('remoteStats')).find((x) => x.sid === p.video).stats.find((s) => s.type === 'inbound-rtp').framesDecoded;
    await sub.call('setVideoVisible', false);
    await new Promise((r) => setTimeout(r, 3000));
    const a = await dec(); await new Promise((r) => setTimeout(r, 2000)); const b = await dec();
    console.log(`  hidden: frames decoded in 2 s: ${b - a}`);
    await sub.call('setVideoVisible', true);
    await waitFor('frames again after visible', async () => (await dec()) > b + 10, { ms: 10000 });
    const ls = await pub.call('localStats');
    console.log('  pub layers', ls.find((t) => t.kind === 'video').stats.filter((s) => s.type === 'outbound-rtp').map((s) => `${s.rid}:${s.active}`).join(' '));
    console.log('  sub events', JSON.stringify((await sub.call('events')).filter((e) => /Stream|Quality/.test(e.name))));
  },
  async bigData() {
    const room = roomName('big');
    const a = await h.page('a'); const b = await h.page('b');
    await a.call('connect', h.server.url, await token('a', room), opts);
    await b.call('connect', h.server.url, await token('b', room), opts);
    b.call('registerTextStream');
    await waitFor('peer known', async () => (await a.call('events')).some((e) => e.name === 'ParticipantConnected'), { ms: 5000 });
    for (const n of [1000, 15000, 60000]) {
      await a.call('sendBig', n, true);
      await waitFor(`reliable ${n} bytes`, async () => (await b.call('received')).some((m) => m.text.length === n), { ms: 5000 });
    }
    await a.call('sendTextStream', 200000);
    await waitFor('text stream 200000 chars', async () => (await b.call('received')).some((m) => m.text === 'stream:200000'), { ms: 10000 });
  },
  async rpc() {
    const room = roomName('rpc');
    const a = await h.page('a'); const b = await h.page('b');
    await a.call('connect', h.server.url, await token('a', room), opts);
    await b.call('connect', h.server.url, await token('b', room), opts);
    await b.call('registerEcho');
    await waitFor('peer known', async () => (await a.call('events')).some((e) => e.name === 'ParticipantConnected'), { ms: 5000 });
    const r = await a.call('rpc', 'b', 'echo', 'hi');
    if (r !== 'echo:hi') throw new Error(`rpc answered ${r}`);
  },
};

async function reconnect(scenario) {
  const room = roomName(scenario);
  const pub = await h.page('pub'); const sub = await h.page('sub');
  await pub.call('connect', h.server.url, await token('pub', room), opts);
  const p = await pub.call('publishCameraAndMic', { preset: 'h180' });
  await sub.call('connect', h.server.url, await token('sub', room), opts);
  await decoding(sub, p.video);
  await sub.call('simulate', scenario);
  await waitFor('subscriber reconnected', async () => {
    const ev = await sub.call('events');
    if (ev.some((e) => e.name === 'Disconnected')) throw new Error(`subscriber disconnected: ${JSON.stringify(ev.filter((e) => /Reconn|Disconn|Signal/.test(e.name)))}`);
    return ev.some((e) => e.name === 'Reconnected');
  }, { ms: 20000 });
  console.log('  events', JSON.stringify((await sub.call('events')).filter((e) => /Reconn|Disconn|Signal|Subscribed|Unsub|Connection/.test(e.name))));
  // media again (track objects may be new after a full reconnect)
  await decoding(sub, p.video, 20000);
  await pub.call('simulate', scenario);
  await waitFor('publisher reconnected', async () => {
    const ev = await pub.call('events');
    if (ev.some((e) => e.name === 'Disconnected')) throw new Error(`publisher disconnected: ${JSON.stringify(ev.filter((e) => /Reconn|Disconn|Signal/.test(e.name)))}`);
    return ev.some((e) => e.name === 'Reconnected');
  }, { ms: 20000 });
  const before = await (async () => { const r = await sub.call('remoteStats'); return r.find((x) => x.kind === 'video' && x.subscribed)?.stats.find((s) => s.type === 'inbound-rtp')?.framesDecoded || 0; })();
  await waitFor('video flows after publisher reconnect', async () => {
    const r = await sub.call('remoteStats');
    const v = r.find((x) => x.kind === 'video' && x.subscribed)?.stats.find((s) => s.type === 'inbound-rtp');
    return v && v.framesDecoded > before + 10;
  }, { ms: 20000 });
}

async function codec(name) {
  const room = roomName(name);
  const pub = await h.page('pub'); const sub = await h.page('sub');
  await pub.call('connect', h.server.url, await token('pub', room), opts);
  const p = await pub.call('publishCameraAndMic', { videoCodec: name, preset: 'h360', audio: false });
  await sub.call('connect', h.server.url, await token('sub', room), opts);
  await decoding(sub, p.video, 20000);
  const r = await sub.call('remoteStats');
  const s = r.find((x) => x.sid === p.video).stats;
  console.log(`  ${name}: codec ${s.find((x) => x.type === 'codec')?.mimeType} decoder ${s.find((x) => x.type === 'inbound-rtp')?.decoderImplementation}`);
}

const results = [];
for (const [name, fn] of Object.entries(S)) {
  if (only.length && !only.includes(name)) continue;
  if (name === 'lateSubscribe') continue;
  const t = Date.now();
  try {
    await h.run(`scen-${mode}-${name}`, fn);
    results.push(`OK   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    results.push(`FAIL ${name}: ${e.message.split('\n')[0]}`);
  }
  console.log(results.at(-1));
}
await h.stop();
console.log(`\n[${mode}]\n` + results.join('\n'));
