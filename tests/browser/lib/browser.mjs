// Headless Debian Chromium driven by playwright-core, and a tiny static HTTP
// server (in the test process) serving page/ and livekit-client's UMD build.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { HERE } from './server.mjs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // remote audio must play without a user gesture, or nothing pulls (and
  // measures) the decoded audio
  '--autoplay-policy=no-user-gesture-required',
];

const FILES = {
  '/': [join(HERE, 'page/index.html'), 'text/html'],
  '/index.html': [join(HERE, 'page/index.html'), 'text/html'],
  '/page.js': [join(HERE, 'page/page.js'), 'text/javascript'],
  '/av.js': [join(HERE, 'page/av.js'), 'text/javascript'],
  '/livekit-client.umd.js': [join(HERE, 'node_modules/livekit-client/dist/livekit-client.umd.js'), 'text/javascript'],
  '/livekit-client.umd.js.map': [join(HERE, 'node_modules/livekit-client/dist/livekit-client.umd.js.map'), 'application/json'],
};

/** Serves the page on http://127.0.0.1:<free port> (a secure context for getUserMedia). */
export async function startStatic() {
  const srv = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const f = FILES[path];
    if (path === '/favicon.ico') { res.writeHead(204).end(); return; }
    if (!f) { res.writeHead(404).end('not found'); return; }
    try {
      const body = await readFile(f[0]);
      res.writeHead(200, { 'content-type': f[1], 'cache-control': 'no-store' }).end(body);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${srv.address().port}/`, close: () => new Promise((r) => srv.close(r)) };
}

/** Launches Chromium (Playwright gives every launch a fresh temporary profile). */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // FK_CHROMIUM_ARGS: extra flags for debugging, e.g. WebRTC logging:
    // "--enable-logging=stderr --vmodule=rtp_vp8_ref_finder=5" (with DEBUG=pw:browser)
    args: [...CHROMIUM_FLAGS, ...(process.env.FK_CHROMIUM_ARGS || '').split(' ').filter(Boolean)],
    timeout: 30_000,
  });
}

/** A page in its own browser context, with its console captured. */
export class TestPage {
  constructor(name, page, context) {
    this.name = name;
    this.page = page;
    this.context = context;
    this.logs = [];
    const t0 = Date.now();
    // one line per message, long ones (SDPs: see fk.sdps()) shortened
    const push = (s) => {
      let line = String(s).replace(/\r?\n/g, ' ⏎ ');
      if (line.length > 600) line = `${line.slice(0, 600)}… (${line.length} chars)`;
      this.logs.push(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${line}`);
    };
    page.on('console', (m) => push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => push(`pageerror: ${e.stack || e}`));
    page.on('crash', () => push('PAGE CRASHED'));
    page.on('requestfailed', (r) => push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  }

  static async open(browser, name, staticUrl) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const tp = new TestPage(name, page, context);
    await page.goto(staticUrl, { timeout: 15_000 });
    await page.waitForFunction(() => window.fk && window.fk.frames && window.LivekitClient, null, { timeout: 15_000 });
    return tp;
  }

  /** Calls window.fk[fn](...args) in the page. */
  call(fn, ...args) {
    return this.page.evaluate(([fn, args]) => window.fk[fn](...args), [fn, args]);
  }

  logTail(lines = 120) {
    return this.logs.slice(-lines).join('\n') || '(no console output)';
  }

  async close() {
    try { await this.call('disconnect'); } catch { /* page may be gone */ }
    await this.context.close().catch(() => {});
  }
}
