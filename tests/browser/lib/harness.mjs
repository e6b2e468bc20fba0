// Shared fixture for the browser tests: one ferrokit server, one static
// server and one Chromium per test file; diagnostics on failure.
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FerrokitServer, LOG_DIR, waitFor } from './server.mjs';
import { startStatic, launchBrowser, TestPage } from './browser.mjs';
import { token, roomName } from './token.mjs';

export { waitFor, token, roomName };

export class Harness {
  /** `opts.server`: options for FerrokitServer (e.g. { udpPort }). */
  constructor(name, opts = {}) {
    this.name = name;
    this.server = new FerrokitServer(name, opts.server);
    this.pages = [];
  }

  async start() {
    await this.server.start();
    this.static = await startStatic();
    this.browser = await launchBrowser();
    this.browserVersion = this.browser.version();
    return this;
  }

  async page(name) {
    const p = await TestPage.open(this.browser, name, this.static.url);
    this.pages.push(p);
    return p;
  }

  /** Runs `fn(ctx)`; on failure, appends the pages' console logs and the
   *  server log written meanwhile to the error, and saves them in logs/. */
  async run(testName, fn, { quiet = false } = {}) {
    const logStart = this.server.logSize();
    const before = this.pages.length;
    const saveConsoles = (suffix) => {
      mkdirSync(LOG_DIR, { recursive: true });
      const file = join(LOG_DIR, `${testName.replace(/[^\w-]+/g, '_')}.${suffix}`);
      const full = this.pages.slice(before).map((p) => `--- console of ${p.name} ---\n${p.logs.join('\n')}`).join('\n\n');
      return [file, full];
    };
    try {
      const result = await fn();
      const [file, full] = saveConsoles('console.txt');
      writeFileSync(file, full);
      return result;
    } catch (err) {
      const pages = this.pages.slice(before);
      let diag = `\n===== diagnostics for "${testName}" =====\n`;
      let sdps = '';
      for (const p of pages) {
        let events = '';
        try { events = JSON.stringify(await p.call('events')); } catch { /* closed */ }
        diag += `\n--- browser console of page "${p.name}" (last 120 lines) ---\n${p.logTail()}\n--- SDK events of "${p.name}" ---\n${events}\n`;
        try {
          for (const d of await p.call('sdps')) {
            sdps += `\n--- ${p.name}: pc ${d.pc} ${d.op} ${d.type}${d.ok ? '' : ` FAILED: ${d.error}`} ---\n${d.sdp}\n`;
          }
        } catch { /* closed */ }
      }
      diag += `\n--- server log during the test (last 80 lines; full log: ${this.server.logPath}) ---\n${this.server.logTail(80, logStart)}\n`;
      const [file, full] = saveConsoles('diag.txt');
      writeFileSync(file, `${diag}\n\n===== full page consoles =====\n${full}\n\n===== SDPs applied in the pages =====\n${sdps}`);
      if (quiet) {
        err.message += `\n(diagnostics: ${file})`;
      } else {
        process.stderr.write(`${diag}(full consoles and SDPs saved in ${file})\n`);
        err.message += diag;
      }
      throw err;
    } finally {
      for (const p of this.pages.slice(before)) await p.close();
      this.pages.length = before;
    }
  }

  async stop() {
    await this.browser?.close().catch(() => {});
    await this.static?.close();
    await this.server.stop();
  }
}

/** For the inner scripts run inside a network namespace: starts `h`, runs
 *  `fn` as the run `name`, stops `h` and exits the process: 0, or 1 when
 *  the setup, the run or the stop threw (the error goes to stderr). */
export async function runScript(h, name, fn) {
  let code = 0;
  try {
    await h.start();
    await h.run(name, fn);
  } catch (e) {
    console.error(e.stack || String(e));
    code = 1;
  } finally {
    await h.stop().catch((e) => { console.error(`server stop: ${e.message}`); code = code || 1; });
  }
  process.exit(code);
}
