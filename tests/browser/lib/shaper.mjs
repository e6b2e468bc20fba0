// A bandwidth limit on the server -> client direction, for use inside a
// network namespace (lib/netns.mjs) where the server and Chromium talk over
// lo. The kernel here has htb but no netem: an htb qdisc on lo sends every
// packet to class 1:10 (unlimited) except those that nftables marks with
// `meta priority 1:20`, i.e. UDP from the server's media port, which go
// through class 1:20 (a rate limit with a ~150 ms byte queue: a shaper
// like a real bottleneck link, so delay grows before anything is dropped).
// Needs root (tc, nft); run by the process inside the namespace.
import { run } from './netns.mjs';

const TABLE = 'fkshape';
// Tokens the limited class may save up: about one packet, so that it
// serializes like a link. With 4 KB, a 15 ms BWE probe passed at line rate
// and measured up to 1.6 Mbit/s through a 700 kbit/s limit.
const BURST = '1600';

export class Shaper {
  /** Limits UDP sent from `udpPort` on lo; `unlimitedKbit` is "no limit". */
  constructor(udpPort, unlimitedKbit = 10_000_000) {
    this.udpPort = udpPort;
    this.unlimitedKbit = unlimitedKbit;
  }

  /** Installs the qdisc (unlimited) and the nftables rule that classifies. */
  install() {
    const k = this.unlimitedKbit;
    run('tc', ['qdisc', 'replace', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10', 'r2q', '100000']);
    run('tc', ['class', 'replace', 'dev', 'lo', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', `${k}kbit`]);
    run('tc', ['class', 'replace', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', `${k}kbit`, 'ceil', `${k}kbit`, 'burst', BURST, 'cburst', BURST]);
    this.setQueue(k);
    run('nft', ['-f', '-'], `table inet ${TABLE} {
  chain out {
    type filter hook output priority 0; policy accept;
    udp sport ${this.udpPort} meta priority set 1:20 counter comment "shaped"
  }
}
`);
    return this;
  }

  /** A byte fifo holding ~150 ms at `kbit` (at least 8 full packets). */
  setQueue(kbit) {
    const bytes = Math.max(12_000, Math.round(kbit * 1000 / 8 * 0.15));
    run('tc', ['qdisc', 'replace', 'dev', 'lo', 'parent', '1:20', 'handle', '20:', 'bfifo', 'limit', String(bytes)]);
  }

  /** Limits the server's UDP to `kbit` kbit/s. */
  limit(kbit) {
    run('tc', ['class', 'change', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', `${kbit}kbit`, 'ceil', `${kbit}kbit`, 'burst', BURST, 'cburst', BURST]);
    this.setQueue(kbit);
  }

  /** Lifts the limit. */
  lift() { this.limit(this.unlimitedKbit); }

  /** { packets, bytes } shaped, { sent, dropped } by the limited class's queue. */
  stats() {
    const nft = run('nft', ['list', 'table', 'inet', TABLE]);
    const m = nft.match(/counter packets (\d+) bytes (\d+)/);
    const q = run('tc', ['-s', 'qdisc', 'show', 'dev', 'lo']);
    const fifo = q.split('qdisc ').find((b) => b.startsWith('bfifo 20:')) || '';
    const d = fifo.match(/Sent (\d+) bytes (\d+) pkt \(dropped (\d+)/);
    return {
      shaped_packets: m ? Number(m[1]) : null,
      queue_sent_packets: d ? Number(d[2]) : null,
      queue_dropped: d ? Number(d[3]) : null,
    };
  }
}
