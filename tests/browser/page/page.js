// Test page: drives livekit-client (UMD global LivekitClient) for the test
// process, which calls window.fk.<fn>(...) through Playwright.
'use strict';
(() => {
  const LK = window.LivekitClient;
  const t0 = performance.now();
  const events = [];
  let room = null;
  const received = [];
  // performance.now() of moments the tests time against (connect start,
  // TrackSubscribed per track sid, ...); see also page/av.js
  const marks = {};

  function ev(name, detail) {
    const e = { t: +((performance.now() - t0) / 1000).toFixed(2), name, ...(detail || {}) };
    events.push(e);
    console.log(`[fk] event ${name} ${detail ? JSON.stringify(detail) : ''}`);
  }

  // Record every peer connection and the descriptions applied to it.
  const pcs = [];
  const sdps = [];
  const NativePC = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new NativePC(...args);
    const n = pcs.push(pc) - 1;
    for (const m of ['setLocalDescription', 'setRemoteDescription']) {
      const orig = pc[m].bind(pc);
      pc[m] = async (d, ...rest) => {
        // Experiment hook (tools only): reorder the video codecs of remote
        // answers as a server honouring the requested codec would.
        if (m === 'setRemoteDescription' && d && d.type === 'answer' && window.fkPreferCodec) {
          d = { type: d.type, sdp: preferCodec(d.sdp, window.fkPreferCodec) };
        }
        try {
          const r = await orig(d, ...rest);
          const desc = m === 'setLocalDescription' ? pc.localDescription : d;
          sdps.push({ pc: n, op: m, type: desc && desc.type, sdp: desc && desc.sdp, ok: true });
          return r;
        } catch (e) {
          sdps.push({ pc: n, op: m, type: d && d.type, sdp: d && d.sdp, ok: false, error: String(e) });
          console.error(`[fk] ${m} failed on pc ${n}: ${e}`);
          throw e;
        }
      };
    }
    pc.addEventListener('connectionstatechange', () => console.log(`[fk] pc ${n} connectionState ${pc.connectionState}`));
    return pc;
  };
  window.RTCPeerConnection.prototype = NativePC.prototype;

  /** Moves `codec` (and its RTX) to the front of every video m-line. */
  function preferCodec(sdp, codec) {
    const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
    const sections = sdp.split(/(?=^m=)/m);
    return sections.map((sec) => {
      if (!sec.startsWith('m=video')) return sec;
      const lines = sec.split(eol);
      const want = new Set();
      for (const l of lines) {
        const r = l.match(/^a=rtpmap:(\d+) ([^/]+)\//);
        if (r && r[2].toLowerCase() === codec.toLowerCase()) want.add(r[1]);
      }
      for (const l of lines) {
        const f = l.match(/^a=fmtp:(\d+) apt=(\d+)/);
        if (f && want.has(f[2])) want.add(f[1]);
      }
      const parts = lines[0].split(' ');
      const pts = parts.slice(3);
      lines[0] = [...parts.slice(0, 3), ...pts.filter((p) => want.has(p)), ...pts.filter((p) => !want.has(p))].join(' ');
      return lines.join(eol);
    }).join('');
  }
  Object.setPrototypeOf(window.RTCPeerConnection, NativePC);

  window.addEventListener('unhandledrejection', (e) => console.error('[fk] unhandledrejection', e.reason && (e.reason.stack || e.reason)));

  function statsList(report) {
    const out = [];
    if (!report) return out;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' || s.type === 'outbound-rtp' || s.type === 'candidate-pair' && s.nominated) {
        out.push({
          type: s.type, kind: s.kind, ssrc: s.ssrc, rid: s.rid, mid: s.mid,
          packetsReceived: s.packetsReceived, packetsLost: s.packetsLost, bytesReceived: s.bytesReceived,
          framesDecoded: s.framesDecoded, framesReceived: s.framesReceived, keyFramesDecoded: s.keyFramesDecoded,
          frameWidth: s.frameWidth, frameHeight: s.frameHeight, framesPerSecond: s.framesPerSecond,
          totalAudioEnergy: s.totalAudioEnergy, audioLevel: s.audioLevel,
          totalSamplesReceived: s.totalSamplesReceived, concealedSamples: s.concealedSamples,
          pliCount: s.pliCount, nackCount: s.nackCount, firCount: s.firCount,
          packetsSent: s.packetsSent, bytesSent: s.bytesSent, framesEncoded: s.framesEncoded,
          framesSent: s.framesSent, active: s.active, targetBitrate: s.targetBitrate,
          qualityLimitationReason: s.qualityLimitationReason, scalabilityMode: s.scalabilityMode,
          encoderImplementation: s.encoderImplementation, decoderImplementation: s.decoderImplementation,
          availableOutgoingBitrate: s.availableOutgoingBitrate, currentRoundTripTime: s.currentRoundTripTime,
          codecId: s.codecId,
          framesDropped: s.framesDropped, freezeCount: s.freezeCount, totalFreezesDuration: s.totalFreezesDuration,
          retransmittedPacketsReceived: s.retransmittedPacketsReceived, retransmittedPacketsSent: s.retransmittedPacketsSent,
          jitter: s.jitter, jitterBufferDelay: s.jitterBufferDelay, jitterBufferEmittedCount: s.jitterBufferEmittedCount,
        });
      }
      if (s.type === 'codec') out.push({ type: 'codec', id: s.id, mimeType: s.mimeType, payloadType: s.payloadType });
      // From the sender's RTCP sender reports.
      if (s.type === 'remote-outbound-rtp') {
        out.push({
          type: s.type, kind: s.kind, ssrc: s.ssrc, packetsSent: s.packetsSent, bytesSent: s.bytesSent,
          remoteTimestamp: s.remoteTimestamp, reportsSent: s.reportsSent,
        });
      }
    });
    // keep only codecs referenced by rtp stats
    const used = new Set(out.filter((s) => s.codecId).map((s) => s.codecId));
    return out.filter((s) => s.type !== 'codec' || used.has(s.id));
  }

  window.fk = {
    version: LK.version,

    async connect(url, token, opts = {}) {
      LK.setLogLevel(opts.logLevel || 'info');
      const roomOptions = {
        adaptiveStream: !!opts.adaptiveStream,
        dynacast: !!opts.dynacast,
        singlePeerConnection: opts.singlePeerConnection !== false,
      };
      room = new LK.Room(roomOptions);
      const RE = LK.RoomEvent;
      room
        .on(RE.SignalConnected, () => ev('SignalConnected'))
        .on(RE.Connected, () => ev('Connected'))
        .on(RE.Reconnecting, () => ev('Reconnecting'))
        .on(RE.SignalReconnecting, () => ev('SignalReconnecting'))
        .on(RE.Reconnected, () => ev('Reconnected'))
        .on(RE.Disconnected, (reason) => ev('Disconnected', { reason }))
        .on(RE.ParticipantConnected, (p) => ev('ParticipantConnected', { identity: p.identity }))
        .on(RE.ParticipantDisconnected, (p) => ev('ParticipantDisconnected', { identity: p.identity }))
        .on(RE.TrackPublished, (pub, p) => ev('TrackPublished', { sid: pub.trackSid, kind: pub.kind, from: p.identity }))
        .on(RE.TrackSubscribed, (track, pub, p) => {
          marks[`subscribed:${pub.trackSid}`] = performance.now();
          ev('TrackSubscribed', { sid: pub.trackSid, kind: track.kind, from: p.identity });
          const el = track.attach();
          if (track.kind === 'video' && window.fkWatchFrames) window.fkWatchFrames(el, pub.trackSid);
          el.muted = track.kind === 'video';
          el.id = `el-${pub.trackSid}`;
          document.getElementById('media').appendChild(el);
          const pr = el.play && el.play();
          if (pr && pr.catch) pr.catch((e) => ev('PlayFailed', { sid: pub.trackSid, error: String(e) }));
        })
        .on(RE.TrackSubscriptionFailed, (sid, p, err) => ev('TrackSubscriptionFailed', { sid, error: String(err) }))
        .on(RE.TrackUnsubscribed, (track, pub) => ev('TrackUnsubscribed', { sid: pub.trackSid }))
        .on(RE.TrackStreamStateChanged, (pub, state) => ev('TrackStreamStateChanged', { sid: pub.trackSid, state }))
        .on(RE.TrackMuted, (pub, p) => ev('TrackMuted', { sid: pub.trackSid, from: p.identity }))
        .on(RE.TrackUnmuted, (pub, p) => ev('TrackUnmuted', { sid: pub.trackSid, from: p.identity }))
        .on(RE.ActiveSpeakersChanged, (s) => ev('ActiveSpeakersChanged', { speakers: s.map((p) => p.identity) }))
        .on(RE.ConnectionQualityChanged, (q, p) => ev('ConnectionQualityChanged', { quality: q, who: p.identity }))
        .on(RE.AudioPlaybackStatusChanged, (ok) => ev('AudioPlaybackStatusChanged', { ok }))
        .on(RE.MediaDevicesError, (e) => ev('MediaDevicesError', { error: String(e) }))
        .on(RE.ConnectionStateChanged, (s) => ev('ConnectionStateChanged', { state: s }))
        .on(RE.LocalTrackPublished, (pub) => ev('LocalTrackPublished', { sid: pub.trackSid, kind: pub.kind }))
        .on(RE.DataReceived, (payload, p, kind, topic) => {
          const text = new TextDecoder().decode(payload);
          received.push({ text, from: p && p.identity, kind, topic });
          ev('DataReceived', { text, from: p && p.identity, kind, topic });
        });
      marks.connectStart = performance.now();
      await room.connect(url, token, { autoSubscribe: opts.autoSubscribe !== false });
      marks.connected = performance.now();
      const si = room.engine && room.engine.latestJoinResponse && room.engine.latestJoinResponse.serverInfo;
      return {
        sid: room.localParticipant.sid,
        identity: room.localParticipant.identity,
        serverVersion: si && si.version,
        serverProtocol: si && si.protocol,
        sdkVersion: LK.version,
      };
    },

    /** Publishes the fake camera (720p, simulcast) and the fake microphone. */
    async publishCameraAndMic(opts = {}) {
      const res = LK.VideoPresets[opts.preset || 'h720'].resolution;
      const [video, audio] = await Promise.all([
        LK.createLocalVideoTrack({ resolution: res, facingMode: 'user' }),
        opts.audio === false ? null : LK.createLocalAudioTrack(),
      ]);
      const s = video.mediaStreamTrack.getSettings();
      ev('CapturedVideo', { width: s.width, height: s.height, frameRate: s.frameRate });
      const vpub = await room.localParticipant.publishTrack(video, {
        simulcast: opts.simulcast !== false,
        videoCodec: opts.videoCodec || 'vp8',
        source: LK.Track.Source.Camera,
        ...(opts.degradationPreference ? { degradationPreference: opts.degradationPreference } : {}),
      });
      const apub = audio && await room.localParticipant.publishTrack(audio, { source: LK.Track.Source.Microphone, red: opts.red !== false, dtx: opts.dtx !== false });
      return { video: vpub.trackSid, audio: apub && apub.trackSid, captured: { width: s.width, height: s.height } };
    },

    /**
     * Makes this page's receivers refuse RED (call before connect): every
     * receiving audio transceiver gets the receiver's codecs without
     * audio/red (setCodecPreferences) before each offer or answer, so
     * neither the recvonly sections it offers (single PC) nor its answers
     * to the server's offers (dual PC) carry red.
     */
    receiveWithoutRed() {
      const codecs = RTCRtpReceiver.getCapabilities('audio').codecs.filter((c) => c.mimeType.toLowerCase() !== 'audio/red');
      const P = NativePC.prototype;
      for (const m of ['createOffer', 'createAnswer']) {
        const orig = P[m];
        P[m] = function (...args) {
          for (const t of this.getTransceivers()) {
            if (t.receiver.track.kind === 'audio' && t.direction === 'recvonly') t.setCodecPreferences(codecs);
          }
          return orig.apply(this, args);
        };
      }
    },

    /** Stats of every subscribed remote track (receiver.getStats()). */
    async remoteStats() {
      const out = [];
      for (const p of room.remoteParticipants.values()) {
        for (const pub of p.trackPublications.values()) {
          const entry = { from: p.identity, sid: pub.trackSid, kind: pub.kind, subscribed: pub.isSubscribed, stats: [] };
          if (pub.track) {
            try { entry.stats = statsList(await pub.track.getRTCStatsReport()); } catch (e) { entry.error = String(e); }
          }
          out.push(entry);
        }
      }
      return out;
    },

    /** Stats of our published tracks (sender.getStats()): one outbound-rtp per simulcast layer. */
    async localStats() {
      const out = [];
      for (const pub of room.localParticipant.trackPublications.values()) {
        const entry = { sid: pub.trackSid, kind: pub.kind, stats: [] };
        if (pub.track) {
          try { entry.stats = statsList(await pub.track.getRTCStatsReport()); } catch (e) { entry.error = String(e); }
        }
        out.push(entry);
      }
      return out;
    },

    async sendData(text, reliable = true, topic = 'test') {
      await room.localParticipant.publishData(new TextEncoder().encode(text), { reliable, topic });
    },

    received() { return received; },
    sdps() { return sdps; },
    /** getStats of every peer connection, filtered as above. */
    async pcStats() {
      return Promise.all(pcs.map(async (pc, i) => ({ pc: i, state: pc.connectionState, stats: statsList(await pc.getStats()) })));
    },
    async setCameraMuted(muted) {
      const pub = room.localParticipant.getTrackPublication(LK.Track.Source.Camera);
      if (muted) await pub.mute(); else await pub.unmute();
    },
    async unpublishAll() {
      for (const pub of [...room.localParticipant.trackPublications.values()]) {
        await room.localParticipant.unpublishTrack(pub.track, true);
      }
    },
    async rpc(destinationIdentity, method, payload) {
      return room.localParticipant.performRpc({ destinationIdentity, method, payload, responseTimeout: 5000 });
    },
    async sendBig(n, reliable = true) {
      const text = 'x'.repeat(n);
      await room.localParticipant.publishData(new TextEncoder().encode(text), { reliable, topic: 'big' });
    },
    async sendTextStream(n) {
      await room.localParticipant.sendText('y'.repeat(n), { topic: 'stream' });
    },
    registerTextStream() {
      room.registerTextStreamHandler('stream', async (reader, info) => {
        const text = await reader.readAll();
        received.push({ text: `stream:${text.length}`, from: info.identity });
        ev('TextStream', { length: text.length, from: info.identity });
      });
    },
    setVideoVisible(visible) {
      for (const el of document.querySelectorAll('video')) el.style.display = visible ? '' : 'none';
    },
    async simulate(scenario) {
      await room.simulateScenario(scenario);
    },
    registerEcho() {
      room.registerRpcMethod('echo', async (d) => `echo:${d.payload}`);
    },
    events() { return events; },
    marks() { return marks; },
    /** The livekit Room (for page/av.js). */
    room() { return room; },
    state() { return room ? room.state : 'none'; },

    async disconnect() {
      if (room) await room.disconnect();
    },
  };
})();
