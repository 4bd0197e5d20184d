// SPDX-License-Identifier: MIT
// The worker side against the real asyncqd (a queue of kind remote).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { Worker, connect, errorOf } from '../index.js';
import { join } from 'node:path';

import { TLS_DIR, startDaemon, until } from './daemon.js';

const T = { timeout: 30000 };

/** A promise and its resolver. */
function latch() {
  let open;
  const p = new Promise((r) => { open = r; });
  return { p, open };
}

describe('worker', T, () => {
  let d;
  let c;
  before(async () => {
    d = await startDaemon({
      queues: {
        default: { kind: 'echo' },
        r: { kind: 'remote', timeout: 30, retries: 0 },
      },
    });
    c = await connect(d.url);
  });
  after(async () => {
    await c?.close();
    await d?.stop();
  });

  /** A worker on queue r, run in the background; `done` is run()'s promise. */
  function start(opts = {}, setup = () => {}) {
    const w = new Worker(d.url, { queues: 'r', wait: 1, ...opts });
    setup(w);
    const done = w.run();
    return { w, done };
  }

  test('errorOf', () => {
    const e = Object.assign(new Error('bad'), { code: 'bad_input' });
    assert.equal(errorOf(e).code, 'bad_input');
    assert.match(errorOf(e).traceback, /bad/);
    assert.deepEqual(errorOf('plain'), { code: 'exception', message: 'plain' });
    assert.equal(errorOf(Object.assign(new Error('x'), { code: 42 })).code, 'exception');
  });

  test('round trip by name, and the default handler', async () => {
    const { w, done } = start({ concurrency: 2 }, (w) => {
      w.handle('add', async (job) => job.args.a + job.args.b);
      w.handle(async (job) => ({ default: true, name: job.name ?? null, attempts: job.attempts }));
    });
    const a = await c.put({ queue: 'r', name: 'add', args: { a: 2, b: 3 } });
    const b = await c.put({ queue: 'r', args: { x: 1 } });
    const e = await c.put({ queue: 'r', name: 'other', args: {} });
    const recs = await c.wait([a.job, b.job, e.job], { timeout: 10 });
    assert.deepEqual(recs.map((r) => r.state), ['done', 'done', 'done']);
    assert.equal(recs[0].result, 5);
    assert.equal(recs[0].name, 'add');
    assert.deepEqual(recs[1].result, { default: true, name: null, attempts: 0 });
    assert.deepEqual(recs[2].result, { default: true, name: 'other', attempts: 0 });
    await w.stop();
    await done;
  });

  test('a job whose name has no handler fails with no_handler', async () => {
    const { w, done } = start({}, (w) => w.handle('only', () => 1));
    const { job } = await c.put({ queue: 'r', name: 'unknown', args: {} });
    const [rec] = await c.wait([job], { timeout: 10 });
    assert.equal(rec.state, 'failed');
    assert.equal(rec.error.code, 'no_handler');
    await w.stop();
    await done;
  });

  test('a thrown error fails the job with its traceback', async () => {
    const { w, done } = start({}, (w) => {
      w.handle('boom', async () => { throw new Error('it went boom'); });
      w.handle('coded', async () => { throw Object.assign(new Error('nope'), { code: 'bad_input' }); });
    });
    const a = await c.put({ queue: 'r', name: 'boom', args: {} });
    const b = await c.put({ queue: 'r', name: 'coded', args: {} });
    const [ra, rb] = await c.wait([a.job, b.job], { timeout: 10 });
    assert.equal(ra.state, 'failed');
    assert.equal(ra.error.code, 'exception');
    assert.equal(ra.error.message, 'it went boom');
    assert.match(ra.error.traceback, /Error: it went boom\n\s+at /);
    assert.equal(ra.attempts, 1);
    assert.equal(rb.error.code, 'bad_input');
    await w.stop();
    await done;
  });

  test('the lease is renewed while a handler outlives it', async () => {
    let touches = 0;
    const { w, done } = start({ lease: 0.6 }, (w) => {
      w.handle(async (job, { signal }) => {
        // Runs for over 3 lease lengths, counted by the renewals seen.
        const t0 = Date.now();
        await until(() => touches >= 5 || signal.aborted, 10000, 'five touches');
        assert.equal(signal.aborted, false);
        return { ms: Date.now() - t0 };
      });
    });
    w.once('done', () => {});
    const { job } = await c.put({ queue: 'r', args: {} });
    await until(() => w.client, 5000, 'connected');
    const orig = w.client.touch.bind(w.client);
    w.client.touch = async (...a) => {
      const r = await orig(...a);
      touches++;
      return r;
    };
    const [rec] = await c.wait([job], { timeout: 15 });
    assert.equal(rec.state, 'done', JSON.stringify(rec));
    assert.ok(rec.result.ms > 900, `handler ran ${rec.result.ms} ms`);
    assert.equal(rec.attempts, 1);
    await w.stop();
    await done;
  });

  test('job.cancel aborts the handler and nothing is sent', async () => {
    const started = latch();
    const aborted = latch();
    let taskDones = 0;
    const { w, done } = start({}, (w) => {
      w.handle(async (job, { signal }) => {
        started.open(job.id);
        await new Promise((resolve) => signal.addEventListener('abort', resolve));
        aborted.open(signal.reason);
        return 'ignored';
      });
    });
    const { job } = await c.put({ queue: 'r', args: {} });
    assert.equal(await started.p, job);
    const orig = w.client.taskDone.bind(w.client);
    w.client.taskDone = (...a) => { taskDones++; return orig(...a); };
    const cancelled = new Promise((r) => w.once('cancelled', r));
    assert.deepEqual(await c.cancel(job), { job, state: 'cancelled' });
    const reason = await aborted.p;
    assert.equal(reason.name, 'AbortError');
    assert.equal((await cancelled).id, job);
    await until(() => w.running === 0, 5000, 'the slot freed');
    assert.equal(taskDones, 0);
    assert.equal((await c.status(job)).state, 'cancelled');
    await w.stop();
    await done;
  });

  test('concurrency N: N handlers at once, never more', async () => {
    const N = 3;
    let now = 0;
    let max = 0;
    const go = latch();
    const { w, done } = start({ concurrency: N }, (w) => {
      w.handle(async () => {
        now++;
        max = Math.max(max, now);
        await go.p;
        now--;
        return 'ok';
      });
    });
    const rs = await c.putMany(Array.from({ length: 2 * N }, (_, i) => ({ queue: 'r', args: { i } })));
    await until(() => now === N, 5000, `${N} running`);
    const st = (await c.stats('r')).queues.r;
    assert.equal(st.running, N);
    assert.equal(st.size, N);
    go.open();
    const recs = await c.wait(rs.map((r) => r.job), { timeout: 10 });
    assert.ok(recs.every((r) => r.state === 'done'));
    assert.equal(max, N);
    await w.stop();
    await done;
  });

  test('stop() lets handlers finish within the grace', async () => {
    const started = latch();
    const finish = latch();
    const { w, done } = start({}, (w) => {
      w.handle(async () => {
        started.open();
        await finish.p;
        return 'finished';
      });
    });
    const { job } = await c.put({ queue: 'r', args: {} });
    await started.p;
    const stopped = w.stop({ grace: 10 });
    finish.open();
    await stopped;
    await done;
    const rec = await c.status(job);
    assert.equal(rec.state, 'done');
    assert.equal(rec.result, 'finished');
  });

  test('stop() releases what is still held after the grace', async () => {
    const started = latch();
    let reason;
    const { w, done } = start({ concurrency: 2 }, (w) => {
      w.handle(async (job, { signal }) => {
        started.open();
        await new Promise((resolve) => signal.addEventListener('abort', resolve));
        reason = signal.reason;
        throw new Error('stopped');
      });
    });
    const released = [];
    w.on('released', (job) => released.push(job.id));
    const { job } = await c.put({ queue: 'r', args: {} });
    await started.p;
    await w.stop({ grace: 0.2 });
    await done;
    assert.equal(reason?.name, 'AbortError');
    assert.deepEqual(released, [job]);
    const rec = await c.status(job);
    assert.equal(rec.state, 'pending');
    assert.equal(rec.attempts, 0);
    await c.cancel(job);
  });

  test('handleSignals: SIGTERM stops the worker and releases its job', async () => {
    const fixture = new URL('./fixtures/sigworker.mjs', import.meta.url).pathname;
    const child = spawn(process.execPath, [fixture, d.url, 'r', '0.2'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
    let out = '';
    const started = new Promise((resolve) => child.stdout.on('data', (b) => {
      out += b;
      const m = /started (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    }));
    try {
      const { job } = await c.put({ queue: 'r', args: {} });
      assert.equal(await started, job);
      child.kill('SIGTERM');
      assert.deepEqual(await exited, { code: 0, sig: null });
      assert.match(out, /exit\n$/);
      const rec = await c.status(job);
      assert.equal(rec.state, 'pending');
      assert.equal(rec.attempts, 0);
      await c.cancel(job);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a worker on a shared client leaves it open', async () => {
    const shared = await connect(d.url);
    const w = new Worker(shared, { queues: ['r'], wait: 1 });
    w.handle(async (job) => job.args.v * 2);
    const done = w.run();
    const { job } = await c.put({ queue: 'r', args: { v: 21 } });
    const [rec] = await c.wait([job], { timeout: 10 });
    assert.equal(rec.result, 42);
    await w.stop();
    await done;
    assert.equal(shared.closed, false);
    assert.equal(await shared.ping(), 'pong');
    await shared.close();
  });

  test('run() rejects for a queue that is not remote', async () => {
    const w = new Worker(d.url, { queues: 'default' });
    await assert.rejects(w.run(), { code: -32005 });
    const w2 = new Worker(d.url, { queues: 'absent' });
    await assert.rejects(w2.run(), { code: -32002 });
  });
});

describe('worker over tls', T, () => {
  const f = (name) => join(TLS_DIR, name);
  let d;
  before(async () => {
    d = await startDaemon({
      tls: { cert: f('server.pem'), key: f('server.key'), client_ca: f('ca.pem') },
      queues: { r: { kind: 'remote' } },
    }, { tls: true });
  });
  after(async () => { await d?.stop(); });

  test('put and a worker round trip over mutual TLS', async () => {
    const c = await connect(d.url, { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key') });
    const w = new Worker(d.url, { queues: 'r', ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key'), wait: 1 });
    w.handle('up', async (job) => String(job.args.s).toUpperCase());
    const done = w.run();
    const { job } = await c.put({ queue: 'r', name: 'up', args: { s: 'tls' } });
    const [rec] = await c.wait([job], { timeout: 10 });
    assert.equal(rec.result, 'TLS');
    await w.stop();
    await done;
    await c.close();
  });
});
