// A network namespace with packet loss (nftables; the kernel has no
// netem), for running the server, the page server and Chromium with a lossy
// path between them. Needs root (ip netns, nft).
//
// Inside the namespace: lo, plus a veth pair (10.77.0.1 <-> 10.77.0.2) so
// that Chromium has a non-loopback interface to gather ICE candidates from
// (it ignores loopback interfaces; with lo alone ICE never connects). All
// traffic still goes to the server at 127.0.0.1, through lo.
//
// The filter (table inet fkloss, output hook) counts every UDP packet sent
// FROM the server's media port and drops every (100 / `percent`)th of them:
// exactly `percent`% (a random drop of 5% once dropped 3.7% of a run's
// ~1500 packets, and the loss-driven checks saw too little loss). The
// server->client direction only, i.e. the subscriber's downlink media and
// the RTCP the server sends to both clients (NACK, PLI, transport-cc
// feedback, receiver reports). Client->server packets are untouched.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const TABLE = 'fkloss';

/** Runs a command (15 s bound); its stdout, or an error with its stderr. */
export function run(cmd, args, input) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input, timeout: 15_000 });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr || e.message || '').trim()}`);
  }
}

/** Whether namespaces can be used here (root, ip and nft present), or why not. */
export function netnsUnavailable() {
  if (process.getuid && process.getuid() !== 0) return 'not root (ip netns and nft need root)';
  for (const bin of ['ip', 'nft']) {
    try { run('sh', ['-c', `command -v ${bin}`]); } catch { return `${bin} not found (run.sh installs nftables)`; }
  }
  return null;
}

export class LossNetns {
  constructor(tag, udpPort, percent) {
    this.name = `fk-loss-${tag}-${process.pid}`;
    this.udpPort = udpPort;
    this.percent = percent;
    /** One packet in `period` is dropped (none when `percent` is 0). */
    this.period = percent > 0 ? Math.max(1, Math.round(100 / percent)) : 0;
  }

  /** Deletes namespaces left by earlier runs whose process is gone. */
  static removeStale() {
    let list = '';
    try { list = run('ip', ['netns', 'list']); } catch { return; }
    for (const line of list.split('\n')) {
      const m = line.match(/^(fk-loss-\S+-(\d+))\b/);
      if (m && !existsSync(`/proc/${m[2]}`)) {
        try { run('ip', ['netns', 'del', m[1]]); } catch { /* already gone */ }
      }
    }
  }

  create() {
    LossNetns.removeStale();
    run('ip', ['netns', 'add', this.name]);
    const ns = (...a) => run('ip', ['netns', 'exec', this.name, ...a]);
    ns('ip', 'link', 'set', 'lo', 'up');
    ns('ip', 'link', 'add', 'fkv0', 'type', 'veth', 'peer', 'name', 'fkv1');
    ns('ip', 'addr', 'add', '10.77.0.1/24', 'dev', 'fkv0');
    ns('ip', 'addr', 'add', '10.77.0.2/24', 'dev', 'fkv1');
    ns('ip', 'link', 'set', 'fkv0', 'up');
    ns('ip', 'link', 'set', 'fkv1', 'up');
    const drop = this.period > 0
      ? `udp sport ${this.udpPort} numgen inc mod ${this.period} == 0 counter drop comment "dropped"`
      : '';
    const rules = `table inet ${TABLE} {
  chain out {
    type filter hook output priority 0; policy accept;
    udp sport ${this.udpPort} counter comment "all"
    ${drop}
  }
}
`;
    run('ip', ['netns', 'exec', this.name, 'nft', '-f', '-'], rules);
    return this;
  }

  /** Packet counters of the filter: { all, dropped }. */
  counters() {
    const text = run('ip', ['netns', 'exec', this.name, 'nft', 'list', 'table', 'inet', TABLE]);
    const get = (c) => {
      const m = text.match(new RegExp(`counter packets (\\d+) bytes \\d+.*comment "${c}"`));
      if (!m) throw new Error(`no counter "${c}" in:\n${text}`);
      return Number(m[1]);
    };
    return { all: get('all'), dropped: this.period > 0 ? get('dropped') : 0 };
  }

  /** Runs `argv` inside the namespace; resolves { code, stdout, stderr }.
   *  After `ms`, SIGTERM (then SIGKILL 10 s later) and a rejection. The
   *  command gets SIGTERM if this process dies (setpriv --pdeathsig). */
  exec(argv, { env, ms }) {
    return new Promise((resolve, reject) => {
      // `ip netns exec` and setpriv exec the command: the pid is the command's
      const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
      const cmd = setpriv ? [setpriv, '--pdeathsig', 'TERM', '--', ...argv] : argv;
      const child = spawn('ip', ['netns', 'exec', this.name, ...cmd], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      let killer;
      const timer = setTimeout(() => {
        child.kill('SIGTERM');
        killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        reject(new Error(`${argv.join(' ')} still running after ${ms} ms (killed)\n${stderr.slice(-4000)}`));
      }, ms);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        clearTimeout(killer);
        resolve({ code, signal, stdout, stderr });
      });
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
  }

  destroy() {
    try { run('ip', ['netns', 'del', this.name]); } catch { /* not created */ }
  }
}
