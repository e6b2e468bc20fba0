// Starts the ferrokit server under test on free ports (like
// tests/interop/conftest.py): `serve --dev --bind 127.0.0.1 --port P --udp-port U`,
// waits for GET / -> 200 "OK", and at the end sends SIGTERM and expects exit 0.
//
// Environment:
//   FERROKIT_BIN   server binary (default <repo>/target/debug/ferrokit)
//   FERROKIT_URL   use an already running server (dev keys) instead
//   RUST_LOG       server log filter (default "info")
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, accessSync, constants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = resolve(HERE, '..', '..');
export const LOG_DIR = join(HERE, 'logs');
export const API_KEY = 'devkey';
export const API_SECRET = 'secret';

const STARTUP_MS = 20_000;
const SHUTDOWN_MS = 10_000;

export function freeTcpPort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export function freeUdpPort() {
  return new Promise((res, rej) => {
    const s = createSocket('udp4');
    s.once('error', rej);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function httpOk(url) {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return r.status === 200 && (await r.text()).trim() === 'OK';
  } catch {
    return false;
  }
}

/** Polls `fn` until it returns a truthy value or `ms` pass; returns that value or throws. */
export async function waitFor(what, fn, { ms = 20_000, every = 250 } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export class FerrokitServer {
  /** `udpPort`: fixed media port (e.g. for a packet filter); default: a free one. */
  constructor(name, { udpPort } = {}) {
    this.name = name;
    this.fixedUdpPort = udpPort;
    this.proc = null;
    this.exit = null; // { code, signal } once exited
  }

  get url() { return this.wsUrl; }

  async start() {
    const external = process.env.FERROKIT_URL;
    if (external) {
      this.httpUrl = external.replace(/\/+$/, '');
      this.wsUrl = this.httpUrl.replace(/^http/, 'ws');
      return this;
    }
    const bin = process.env.FERROKIT_BIN || join(REPO, 'target/debug/ferrokit');
    try { accessSync(bin, constants.X_OK); } catch {
      throw new Error(`server binary not found or not executable: ${bin} (set FERROKIT_BIN)`);
    }
    const port = await freeTcpPort();
    const udpPort = this.fixedUdpPort || await freeUdpPort();
    this.udpPort = udpPort;
    this.httpUrl = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}`;
    mkdirSync(LOG_DIR, { recursive: true });
    this.logPath = join(LOG_DIR, `server-${this.name}.log`);
    const fd = openSync(this.logPath, 'w');
    const args = ['serve', '--dev', '--bind', '127.0.0.1', '--port', String(port), '--udp-port', String(udpPort)];
    // the server must not outlive the test process
    const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
    const [cmd, argv] = setpriv ? [setpriv, ['--pdeathsig', 'TERM', '--', bin, ...args]] : [bin, args];
    this.proc = spawn(cmd, argv, {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' },
    });
    closeSync(fd);
    this.exited = new Promise((res) => this.proc.once('exit', (code, signal) => {
      this.exit = { code, signal };
      res(this.exit);
    }));
    const deadline = Date.now() + STARTUP_MS;
    while (!(await httpOk(this.httpUrl + '/'))) {
      if (this.exit) throw new Error(`server exited during startup (${JSON.stringify(this.exit)})\n${this.logTail()}`);
      if (Date.now() > deadline) {
        this.proc.kill('SIGKILL');
        throw new Error(`server did not answer GET / within ${STARTUP_MS} ms\n${this.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return this;
  }

  /** Size of the log now (to show only what a test wrote). */
  logSize() {
    try { return readFileSync(this.logPath).length; } catch { return 0; }
  }

  logTail(lines = 80, from = 0) {
    if (!this.logPath) return '(external server: no log)';
    let text;
    try { text = readFileSync(this.logPath).subarray(from).toString('utf8'); } catch { return '(no log)'; }
    return text.split('\n').slice(-lines).join('\n');
  }

  /** SIGTERM; resolves the exit code, throws unless it is 0 within 10 s. */
  async stop() {
    if (!this.proc) return;
    if (this.exit) throw new Error(`server died during the tests (${JSON.stringify(this.exit)})\n${this.logTail()}`);
    // setpriv execs the server, so the pid is the server's
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), SHUTDOWN_MS);
    const { code, signal } = await this.exited;
    clearTimeout(t);
    if (signal) throw new Error(`server did not exit within ${SHUTDOWN_MS} ms of SIGTERM (${signal})\n${this.logTail()}`);
    if (code !== 0) throw new Error(`server exited with code ${code} after SIGTERM (expected 0)\n${this.logTail()}`);
  }
}
