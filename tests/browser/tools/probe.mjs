// Exploration (not a test): a publisher page and a subscriber page for N
// seconds, printing the publisher's simulcast layers and bandwidth estimate
// and the subscriber's decoded size every few seconds.
//   node tools/probe.mjs [single|dual] [seconds] [adaptive] [dynacast]
import { Harness, token, roomName, waitFor } from '../lib/harness.mjs';

const [mode = 'single', secs = '30', ...flags] = process.argv.slice(2);
const h = await new Harness(`probe-${mode}`).start();
const opts = {
  singlePeerConnection: mode === 'single',
  logLevel: process.env.LK_LOG_LEVEL || 'debug',
  adaptiveStream: flags.includes('adaptive'),
  dynacast: flags.includes('dynacast'),
};
try {
  await h.run(`probe-${mode}`, async () => {
    const room = roomName('probe');
    const pub = await h.page('publisher');
    const sub = await h.page('subscriber');
    await pub.call('connect', h.server.url, await token('pub', room), opts);
    console.log('published', await pub.call('publishCameraAndMic', {}));
    await sub.call('connect', h.server.url, await token('sub', room), opts);
    const prev = {};
    const t0 = Date.now();
    while (Date.now() - t0 < Number(secs) * 1000) {
      await new Promise((r) => setTimeout(r, 3000));
      const t = ((Date.now() - t0) / 1000).toFixed(0);
      const local = await pub.call('localStats');
      const parts = [];
      for (const tr of local) {
        for (const s of tr.stats) {
          if (s.type === 'outbound-rtp' && s.kind === 'video') {
            const k = 'o' + s.rid;
            const kbps = prev[k] ? ((s.bytesSent - prev[k]) * 8 / 3000).toFixed(0) : '?';
            prev[k] = s.bytesSent;
            parts.push(`${s.rid}=${s.frameWidth ?? '-'}x${s.frameHeight ?? '-'}@${s.framesPerSecond ?? 0} ${kbps}kbps tgt=${s.targetBitrate} lim=${s.qualityLimitationReason} nack=${s.nackCount} pli=${s.pliCount}`);
          }
          if (s.type === 'candidate-pair' && tr.kind === 'video') parts.push(`bwe=${s.availableOutgoingBitrate}`);
        }
      }
      const remote = await sub.call('remoteStats');
      for (const tr of remote) {
        for (const s of tr.stats) {
          if (s.type !== 'inbound-rtp') continue;
          const k = 'i' + s.kind;
          const kbps = prev[k] ? ((s.bytesReceived - prev[k]) * 8 / 3000).toFixed(0) : '?';
          prev[k] = s.bytesReceived;
          if (s.kind === 'video') parts.push(`SUB video ${s.frameWidth}x${s.frameHeight}@${s.framesPerSecond} dec=${s.framesDecoded} ${kbps}kbps lost=${s.packetsLost} nack=${s.nackCount} pli=${s.pliCount} kf=${s.keyFramesDecoded}`);
          else parts.push(`SUB audio pk=${s.packetsReceived} E=${s.totalAudioEnergy?.toFixed(3)} lost=${s.packetsLost}`);
        }
      }
      console.log(`t=${t}s ${parts.join(' | ')}`);
    }
    console.log('sub events', JSON.stringify(await sub.call('events')));
    console.log('pub events', JSON.stringify(await pub.call('events')));
  });
} finally {
  await h.stop();
}
