// Test page, part 2 (loaded after page.js): frame timing of received video,
// subscriber quality requests, and direct access to the camera's
// RTCRtpSender. Times are performance.now() in ms, the same clock as
// fk.marks().
'use strict';
(() => {
  const LK = window.LivekitClient;
  const fk = window.fk;

  // Per track sid: frames presented by the <video> element, with the time
  // and size of the first one and of every size change
  // (requestVideoFrameCallback: one call per frame handed to the compositor).
  const frames = {};

  window.fkWatchFrames = (el, sid) => {
    if (!el.requestVideoFrameCallback) {
      console.error('[fk] requestVideoFrameCallback unsupported');
      return;
    }
    const rec = { count: 0, first: null, last: null, changes: [] };
    frames[sid] = rec;
    const onFrame = (now, meta) => {
      // presentationTime: when the decoded frame was submitted for display
      const f = { t: meta.presentationTime || now, w: meta.width, h: meta.height, n: rec.count };
      rec.count += 1;
      if (!rec.first) rec.first = f;
      if (!rec.last || rec.last.w !== f.w || rec.last.h !== f.h) {
        rec.changes.push(f);
        console.log(`[fk] frames ${sid}: ${f.w}x${f.h} from frame ${f.n}`);
      }
      rec.last = f;
      el.requestVideoFrameCallback(onFrame);
    };
    el.requestVideoFrameCallback(onFrame);
  };

  function remotePub(sid) {
    for (const p of fk.room().remoteParticipants.values()) {
      const pub = p.trackPublications.get(sid);
      if (pub) return pub;
    }
    throw new Error(`no remote publication ${sid}`);
  }

  function cameraSender() {
    const pub = fk.room().localParticipant.getTrackPublication(LK.Track.Source.Camera);
    const sender = pub && pub.track && pub.track.sender;
    if (!sender) throw new Error('no camera sender');
    return sender;
  }

  Object.assign(fk, {
    now() { return performance.now(); },

    /** Frame record of a subscribed video track (see above), or null. */
    frames(sid) { return frames[sid] || null; },

    /** RemoteTrackPublication.setVideoQuality; returns the time of the call. */
    setVideoQuality(sid, quality) {
      const q = LK.VideoQuality[quality];
      if (q === undefined) throw new Error(`unknown quality ${quality}`);
      const t = performance.now();
      remotePub(sid).setVideoQuality(q);
      return t;
    },

    /** RemoteTrack.streamState ('active' | 'paused') of a subscribed track. */
    streamState(sid) {
      const pub = remotePub(sid);
      return pub.track ? pub.track.streamState : null;
    },

    /** The camera sender's encodings as the SDK (dynacast) left them. */
    senderEncodings() {
      return (cameraSender().getParameters().encodings || []).map((e) => ({
        rid: e.rid, active: e.active, maxBitrate: e.maxBitrate, scaleResolutionDownBy: e.scaleResolutionDownBy,
      }));
    },

    /** Publishes the fake microphone only; returns its track sid. `opts.red`
     *  and `opts.dtx`, when given, are passed to publishTrack (SDK defaults:
     *  both on). */
    async publishMic(opts = {}) {
      const audio = await LK.createLocalAudioTrack();
      const given = Object.fromEntries(['red', 'dtx'].filter((k) => opts[k] !== undefined).map((k) => [k, opts[k]]));
      const pub = await fk.room().localParticipant.publishTrack(audio, { source: LK.Track.Source.Microphone, ...given });
      return pub.trackSid;
    },

    /** Turns every encoding of the camera sender (or only the one with
     *  `rid`) on or off, bypassing the SDK (no signalling: the server only
     *  sees the packets stop). */
    async setSenderActive(active, rid) {
      const sender = cameraSender();
      const params = sender.getParameters();
      for (const e of params.encodings) {
        if (rid === undefined || e.rid === rid) e.active = active;
      }
      await sender.setParameters(params);
      return performance.now();
    },
  });
})();
