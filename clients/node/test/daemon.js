// SPDX-License-Identifier: MIT
// Starts the real asyncqd ($ASYNCQD) for a test file, on a Unix socket (or
// a free TCP port for tls://) in a temporary directory, with a config the
// test gives.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { connect, AsyncqError } from '../index.js';

const START_MS = 10000;
const STOP_MS = 10000;

export const ASYNCQD = process.env.ASYNCQD;
if (!ASYNCQD || !existsSync(ASYNCQD))
  throw new Error(`asyncq tests: set ASYNCQD to the built asyncqd (got ${JSON.stringify(ASYNCQD)})`);

/** The repository's tests/tls directory (certificates of the tls part). */
export const TLS_DIR = new URL('../../../tests/tls/', import.meta.url).pathname;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/** Resolves when fn() resolves truthy; polls until the deadline. */
export async function until(fn, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * @param {object} config the config, without `listen` (added here)
 * @param {{tls?: boolean, token?: string}} [opts]
 */
export async function startDaemon(config, opts = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'asyncq-node.'));
  const cfg = { journal: { path: null }, log: { level: 'warn' }, ...config };
  let url;
  let dialUrl;
  if (opts.tls) {
    const port = await freePort();
    cfg.listen = [`tls://127.0.0.1:${port}`, `unix:${dir}/s`];
    url = `tls://127.0.0.1:${port}`;
  } else {
    cfg.listen = [`unix:${dir}/s`];
    url = `unix:${dir}/s`;
  }
  dialUrl = `unix:${dir}/s`;
  if (opts.token) {
    writeFileSync(join(dir, 'token'), opts.token + '\n');
    cfg.auth = { token_file: join(dir, 'token') };
  }
  writeFileSync(join(dir, 'asyncqd.json'), JSON.stringify(cfg, null, 1));
  const log = join(dir, 'asyncqd.log');
  writeFileSync(log, '');
  const { openSync } = await import('node:fs');
  const fd = openSync(log, 'a');
  const child = spawn(ASYNCQD, ['--config', join(dir, 'asyncqd.json')], {
    stdio: ['ignore', fd, fd],
  });
  let exited = null;
  const exit = new Promise((resolve) => child.once('exit', (code, sig) => {
    exited = { code, sig };
    resolve(exited);
  }));
  const readLog = () => readFileSync(log, 'utf8');
  const deadline = Date.now() + START_MS;
  for (;;) {
    if (exited) throw new Error(`asyncqd exited at start (${JSON.stringify(exited)}):\n${readLog()}`);
    try {
      const c = await connect(dialUrl, { timeout: 1, token: opts.token });
      await c.ping();
      await c.close();
      break;
    } catch (e) {
      if (e instanceof AsyncqError) throw e;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`asyncqd did not answer within ${START_MS} ms:\n${readLog()}`);
      }
      await Promise.race([exit, new Promise((r) => setTimeout(r, 20))]);
    }
  }
  return {
    url,
    unixUrl: dialUrl,
    dir,
    child,
    log: readLog,
    /** SIGTERM, wait for exit; the directory is removed. */
    async stop(sig = 'SIGTERM') {
      if (!exited) {
        child.kill(sig);
        const t = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
        await exit;
        clearTimeout(t);
      }
      if (!process.env.ASYNCQ_KEEP) rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
}
