// SPDX-License-Identifier: MIT
// The producer side against the real asyncqd.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { AsyncqError, ErrorCode, TransportError, connect, parseUrl } from '../index.js';
import { startDaemon, until } from './daemon.js';

const T = { timeout: 20000 };

describe('producer', T, () => {
  let d;
  let c;
  before(async () => {
    d = await startDaemon({
      queues: {
        default: { kind: 'echo', consumers: 2 },
        idle: { kind: 'sleep', consumers: 0 },
        small: { kind: 'echo', consumers: 0, maxsize: 5 },
      },
      schedules: {
        nightly: { cron: '30 2 * * *', timezone: 'Europe/Berlin', queue: 'small' },
      },
    });
    c = await connect(d.url);
  });
  after(async () => {
    await c?.close();
    await d?.stop();
  });

  test('parseUrl', () => {
    assert.deepEqual(parseUrl('tcp://127.0.0.1:7878'), { scheme: 'tcp', host: '127.0.0.1', port: 7878 });
    assert.deepEqual(parseUrl('localhost:1'), { scheme: 'tcp', host: 'localhost', port: 1 });
    assert.deepEqual(parseUrl('tls://[::1]:99'), { scheme: 'tls', host: '::1', port: 99 });
    assert.deepEqual(parseUrl('unix:/run/a.sock'), { scheme: 'unix', path: '/run/a.sock' });
    assert.throws(() => parseUrl('http://x:1'), /unknown scheme/);
    assert.throws(() => parseUrl('tcp://x'), /HOST:PORT/);
    assert.throws(() => parseUrl('unix:rel'), /ABSOLUTE/);
  });

  test('ping, put, status, wait, join', async () => {
    assert.equal(await c.ping(), 'pong');
    const r = await c.put({ args: { n: 1, big: 'x' }, priority: -1 });
    assert.ok(Number.isInteger(r.job));
    assert.ok(['pending', 'running', 'done'].includes(r.state) || r.state === 'pending');
    const [rec] = await c.wait([r.job]);
    assert.equal(rec.state, 'done');
    assert.deepEqual(rec.result, { n: 1, big: 'x' });
    const st = await c.status(r.job);
    assert.equal(st.job, r.job);
    assert.equal(st.priority, -1);
    const w = await c.put({ args: { a: 2 }, wait: true });
    assert.equal(w.state, 'done');
    assert.deepEqual(w.result, { a: 2 });
    assert.deepEqual(await c.join('default', { timeout: 5 }), { queue: 'default' });
    const any = await c.wait([r.job, w.job], { mode: 'any' });
    assert.equal(any.length, 1);
  });

  test('pipelined requests are matched by id', async () => {
    const ps = [];
    for (let i = 0; i < 200; i++) ps.push(c.put({ args: { i } }));
    const rs = await Promise.all(ps);
    const recs = await c.wait(rs.map((r) => r.job));
    assert.deepEqual(recs.map((x) => x.result.i), [...Array(200).keys()]);
  });

  test('server errors are AsyncqError with code', async () => {
    await assert.rejects(c.status(987654321), (e) => {
      assert.ok(e instanceof AsyncqError);
      assert.equal(e.code, ErrorCode.NO_SUCH_JOB);
      assert.equal(e.codeName, 'no_such_job');
      assert.equal(e.method, 'status');
      return true;
    });
    await assert.rejects(c.put({ queue: 'nope' }), { code: ErrorCode.NO_SUCH_QUEUE });
    await assert.rejects(c.put({ priority: 1.5 }), (e) => e.code === ErrorCode.INVALID_PARAMS && /priority/.test(e.message));
    await assert.rejects(c.call('frobnicate'), { code: ErrorCode.METHOD_NOT_FOUND });
    await assert.rejects(c.put({ queue: 'small', nowait: true, args: {} }).then(async () => {
      for (let i = 0; i < 10; i++) await c.put({ queue: 'small', nowait: true, args: {} });
    }), { code: ErrorCode.QUEUE_FULL });
    await c.cancel({ queue: 'small' });
    assert.equal(await c.ping(), 'pong');
  });

  test('cancel, list, listAll, retry, delete', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await c.put({ queue: 'idle', args: { seconds: 0 } })).job);
    assert.deepEqual(await c.cancel(ids[0]), { job: ids[0], state: 'cancelled' });
    await assert.rejects(c.cancel(ids[0]), { code: ErrorCode.JOB_FINISHED });
    const page = await c.list({ queue: 'idle', state: 'pending', limit: 2 });
    assert.deepEqual(page.jobs.map((j) => j.job), ids.slice(1, 3));
    assert.equal(page.next, ids[2]);
    const all = [];
    for await (const rec of c.listAll({ queue: 'idle', state: ['pending'], limit: 1 })) all.push(rec.job);
    assert.deepEqual(all, ids.slice(1));
    const desc = [];
    for await (const rec of c.listAll({ queue: 'idle', limit: 2, order: 'desc' })) desc.push(rec.job);
    assert.deepEqual(desc, [...ids].reverse());
    assert.deepEqual(await c.retry(ids[0], { delay: 100 }), { job: ids[0], state: 'delayed' });
    await assert.rejects(c.retry(ids[0]), { code: ErrorCode.JOB_NOT_FINISHED });
    assert.deepEqual(await c.cancel({ queue: 'idle' }), { cancelled: 5 });
    assert.deepEqual(await c.retry({ queue: 'idle', state: 'cancelled' }), { retried: 5 });
    assert.deepEqual(await c.cancel({ queue: 'idle' }), { cancelled: 5 });
    assert.deepEqual(await c.delete(ids[1]), { job: ids[1], deleted: true });
    await assert.rejects(c.status(ids[1]), { code: ErrorCode.NO_SUCH_JOB });
    assert.deepEqual(await c.delete({ queue: 'idle', state: 'cancelled' }), { deleted: 4 });
  });

  test('at, after, batch and schedules (SPEC §11)', async () => {
    const gate = (await c.put({ queue: 'small', batch: 'nb1' })).job;
    const w = await c.put({ args: { x: 1 }, after: [gate], batch: 'nb1' });
    assert.equal(w.state, 'waiting');
    const late = await c.put({ queue: 'small', at: '2033-05-18T03:33:20Z' });
    assert.equal(late.state, 'delayed');
    assert.ok(Math.abs((await c.status(late.job)).due - 2000000000) < 0.01);
    const st = await c.stats(undefined, { batch: 'nb1' });
    assert.deepEqual([st.batch, st.total, st.waiting, st.pending], ['nb1', 2, 1, 1]);
    await assert.rejects(c.join(undefined, { batch: 'nb1', timeout: 0.05 }), { code: ErrorCode.TIMEOUT });
    await assert.rejects(c.put({ after: [999999999] }), { code: ErrorCode.NO_SUCH_JOB });
    await c.cancel(gate);
    const [rec] = await c.wait([w.job], { timeout: 20 });
    assert.equal(rec.error.code, 'dependency_failed');
    assert.deepEqual(await c.join(undefined, { batch: 'nb1', timeout: 20 }), { batch: 'nb1' });
    const ok = await c.put({ args: {}, after: [gate], afterPolicy: 'finished' });
    assert.equal((await c.wait([ok.job], { timeout: 20 }))[0].state, 'done');
    await c.cancel(late.job);
    const [s] = await c.schedules();
    assert.deepEqual([s.name, s.cron, s.timezone, s.queue], ['nightly', '30 2 * * *', 'Europe/Berlin', 'small']);
    assert.ok(s.next > 0);
    assert.deepEqual(await c.schedules('nightly'), [s]);
  });

  test('stats, pause, resume, scale', async () => {
    const s = await c.stats();
    assert.ok(s.queues.default);
    const one = await c.stats('idle');
    assert.deepEqual(Object.keys(one.queues), ['idle']);
    assert.deepEqual(await c.pause('default'), { queue: 'default', paused: true });
    assert.equal((await c.stats('default')).queues.default.paused, true);
    assert.deepEqual(await c.resume('default'), { queue: 'default', paused: false });
    assert.deepEqual(await c.scale('default', 3), { queue: 'default', consumers: 3 });
    assert.equal((await c.stats('default')).queues.default.consumers, 3);
  });

  test('asCompleted yields records as jobs finish', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await c.put({ queue: 'idle', args: { seconds: 0 } })).job);
    const order = [ids[1], ids[2], ids[0]];
    const seen = [];
    const it = c.asCompleted(ids, { timeout: 10 });
    // Cancel in a chosen order, each after the previous record came out.
    await c.cancel(order[0]);
    for await (const rec of it) {
      seen.push(rec.job);
      assert.equal(rec.state, 'cancelled');
      if (seen.length < 3) await c.cancel(order[seen.length]);
    }
    assert.deepEqual(seen, order);
  });

  test('an AbortSignal ends a wait; the connection goes on', async () => {
    const { job } = await c.put({ queue: 'idle', args: { seconds: 0 } });
    const ac = new AbortController();
    const p = c.wait([job], { signal: ac.signal });
    const j = c.join('idle', { signal: AbortSignal.timeout(50) });
    ac.abort();
    await assert.rejects(p, { name: 'AbortError' });
    await assert.rejects(j, { name: 'TimeoutError' });
    await assert.rejects(c.status(job, { signal: AbortSignal.abort() }), { name: 'AbortError' });
    // An aborted asCompleted stops too.
    const ac2 = new AbortController();
    const it = c.asCompleted([job], { signal: ac2.signal });
    const next = it.next();
    ac2.abort();
    await assert.rejects(next, { name: 'AbortError' });
    assert.equal(await c.ping(), 'pong');
    await c.cancel(job); // the daemon's wait ends now; its reply is dropped
    assert.equal((await c.status(job)).state, 'cancelled');
  });

  test('putMany keeps a bounded window under back-pressure', async () => {
    const window = 8;
    const items = function* () {
      for (let i = 0; i < 50; i++) yield { queue: 'small', args: { i } };
    };
    const pm = c.putMany(items(), { window });
    let maxPending = 0;
    const watch = setInterval(() => { maxPending = Math.max(maxPending, c._pending.size); }, 1);
    const other = await connect(d.url);
    try {
      // The queue fills up to maxsize, then the daemon holds the puts back.
      await until(async () => (await other.stats('small')).queues.small.unfinished === 5, 5000, 'small full');
      maxPending = Math.max(maxPending, c._pending.size);
      assert.ok(c._pending.size <= window, `pending ${c._pending.size} > window ${window}`);
      assert.ok(c._pending.size >= 1);
      await other.scale('small', 2);
      const rs = await pm;
      assert.equal(rs.length, 50);
      const ids = rs.map((r) => r.job);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
      const recs = await other.wait(ids, { timeout: 10 });
      assert.deepEqual(recs.map((r) => r.result.i), [...Array(50).keys()]);
      assert.ok(maxPending <= window, `max pending ${maxPending}`);
    } finally {
      clearInterval(watch);
      await other.scale('small', 0);
      await other.close();
    }
  });

  test('putMany from an async iterable, errors returned in place', async () => {
    async function* gen() {
      yield { args: { a: 1 } };
      yield { queue: 'nope' };
      yield { args: { a: 3 } };
    }
    const rs = await c.putMany(gen(), { errors: 'return', window: 2 });
    assert.equal(rs.length, 3);
    assert.ok(rs[1] instanceof AsyncqError && rs[1].code === ErrorCode.NO_SUCH_QUEUE);
    await assert.rejects(c.putMany([{ queue: 'nope' }]), { code: ErrorCode.NO_SUCH_QUEUE });
  });

  test('transport errors are TransportError', async () => {
    await assert.rejects(connect('unix:/nonexistent/asyncq.sock', { timeout: 2 }), (e) => {
      assert.ok(e instanceof TransportError);
      assert.ok(!(e instanceof AsyncqError));
      return true;
    });
    const c2 = await connect(d.url);
    const { job } = await c2.put({ queue: 'idle', args: { seconds: 0 } });
    const p = assert.rejects(c2.wait([job]), TransportError);
    await c2.close();
    await p;
    await assert.rejects(c2.ping(), TransportError);
    assert.equal(c2.closed, true);
    await c.cancel(job);
  });
});

describe('lifecycle', T, () => {
  test('a Client made with new is not connected; asyncDispose closes', async () => {
    const { Client } = await import('../index.js');
    await assert.rejects(new Client('unix:/nonexistent').ping(), /not connected/);
    const d = await startDaemon({ queues: { default: { kind: 'echo' } } });
    try {
      const c = await connect(d.url);
      if (typeof Symbol.asyncDispose === 'symbol') {
        await c[Symbol.asyncDispose]();
        assert.equal(c.closed, true);
      }
      await c.close();
      assert.equal(c.closed, true);
    } finally {
      await d.stop();
    }
  });
});

describe('auth', T, () => {
  let d;
  before(async () => { d = await startDaemon({ queues: { default: { kind: 'echo' } } }, { token: 's3cret' }); });
  after(async () => { await d?.stop(); });

  test('token from the option or ASYNCQ_TOKEN', async () => {
    const bare = await connect(d.url);
    await assert.rejects(bare.ping(), { code: ErrorCode.UNAUTHORIZED });
    await bare.close();
    await assert.rejects(connect(d.url, { token: 'wrong' }), { code: ErrorCode.UNAUTHORIZED });
    const ok = await connect(d.url, { token: 's3cret' });
    assert.equal(await ok.ping(), 'pong');
    await ok.close();
    process.env.ASYNCQ_TOKEN = 's3cret';
    try {
      const env = await connect(d.url);
      assert.equal(await env.ping(), 'pong');
      await env.close();
    } finally {
      delete process.env.ASYNCQ_TOKEN;
    }
  });
});

describe('daemon shutdown', T, () => {
  test('calls waiting at a stop fail; then the connection is gone', async () => {
    const d = await startDaemon({ queues: { default: { kind: 'sleep', consumers: 0 } }, shutdown: { grace: 0.1 } });
    const c = await connect(d.url);
    const closed = new Promise((r) => c.once('close', r));
    const { job } = await c.put({ args: { seconds: 0 } });
    const p = assert.rejects(c.wait([job]), (e) => e instanceof TransportError || e.code === ErrorCode.SHUTTING_DOWN);
    await d.stop();
    await p;
    await closed;
    await assert.rejects(c.ping(), TransportError);
  });
});
