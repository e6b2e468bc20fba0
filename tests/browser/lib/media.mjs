// Helpers shared by the media tests (layers, dynacast, signals, loss): a
// publisher page and a subscriber page in one room, and readers for the
// stats the tests assert on.
import { token, roomName, waitFor } from './harness.mjs';

export const MODES = [
  ['single', true],
  ['dual', false],
];
export const LOG_LEVEL = process.env.LK_LOG_LEVEL || 'debug';
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Prints one `FIGURES {...}` line (collected in the test output). */
export function figures(obj) {
  console.log(`FIGURES ${JSON.stringify(obj)}`);
}

/**
 * Opens a publisher and a subscriber page, connects the publisher and
 * publishes its camera (no microphone unless `publish.audio`), then
 * connects the subscriber (unless `subscriber === false`).
 * Returns { room, pub, sub, video (track sid), pubOpts, subOpts }.
 */
export async function pubSub(h, tag, { singlePeerConnection, pubOpts = {}, subOpts = {}, publish = {}, subscriber = true }) {
  const room = roomName(tag);
  const base = { singlePeerConnection, logLevel: LOG_LEVEL };
  const pOpts = { ...base, ...pubOpts };
  const sOpts = { ...base, ...subOpts };
  const pub = await h.page(`publisher-${tag}`);
  const sub = await h.page(`subscriber-${tag}`);
  await pub.call('connect', h.server.url, await token('pub', room), pOpts);
  const published = await pub.call('publishCameraAndMic', { audio: false, ...publish });
  if (subscriber) await sub.call('connect', h.server.url, await token('sub', room), sOpts);
  return { room, pub, sub, video: published.video, subOpts: sOpts, pubOpts: pOpts };
}

/** The publisher's outbound-rtp video stats by rid: { q, h, f }. */
export async function outboundByRid(pub) {
  const local = await pub.call('localStats');
  const out = {};
  for (const t of local) {
    for (const s of t.stats) {
      if (s.type === 'outbound-rtp' && s.kind === 'video') out[s.rid || 'q'] = s;
    }
  }
  return out;
}

/** Bytes sent per rid during `ms` (two samples): { q, h, f } in bytes. */
export async function bytesSentDuring(pub, ms = 1000) {
  const a = await outboundByRid(pub);
  await sleep(ms);
  const b = await outboundByRid(pub);
  const out = {};
  for (const rid of Object.keys(b)) out[rid] = (b[rid].bytesSent || 0) - (a[rid]?.bytesSent || 0);
  return out;
}

/** The subscriber's inbound-rtp stats of track `sid` (undefined if none yet). */
export async function inboundVideo(sub, sid) {
  const r = await sub.call('remoteStats');
  return r.find((t) => t.sid === sid)?.stats.find((s) => s.type === 'inbound-rtp');
}

/** Waits until the subscriber has decoded `n` more frames of `sid`; returns the stats. */
export async function decodes(sub, sid, { n = 10, ms = 20_000 } = {}) {
  const first = await waitFor(`subscriber decoding ${sid}`, async () => {
    const s = await inboundVideo(sub, sid);
    return s?.framesDecoded > 0 && s;
  }, { ms });
  return waitFor(`subscriber's decoded frames of ${sid} to grow by ${n}`, async () => {
    const s = await inboundVideo(sub, sid);
    return s?.framesDecoded >= first.framesDecoded + n && s;
  }, { ms });
}

/** SDK events named `name` on a page (optionally filtered). */
export async function eventsNamed(page, name, pred = () => true) {
  return (await page.call('events')).filter((e) => e.name === name && pred(e));
}

/** A one-line summary of the publisher's layers (for messages). */
export async function layerSummary(pub) {
  const [rids, enc] = await Promise.all([outboundByRid(pub), pub.call('senderEncodings').catch(() => [])]);
  return Object.entries(rids).map(([rid, s]) => {
    const e = enc.find((x) => (x.rid || 'q') === rid);
    return `${rid}:${s.frameWidth ?? '-'}x${s.frameHeight ?? '-'}@${s.framesPerSecond ?? 0}fps sent=${s.bytesSent} active=${s.active} enc.active=${e?.active} lim=${s.qualityLimitationReason}`;
  }).join(' | ');
}
