// SPDX-License-Identifier: MIT
// The producer side: one connection to asyncqd, requests pipelined and
// matched by id, server notifications dispatched.

import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

import { AsyncqError, TransportError } from './errors.js';

export const DEFAULT_SERVER = 'tcp://127.0.0.1:7878';
const DEFAULT_TIMEOUT = 10; // s, connect + TLS handshake + auth
const DEFAULT_WINDOW = 512; // putMany: puts in flight

/**
 * Parses a server address: `tcp://HOST:PORT`, `HOST:PORT`, `unix:/PATH`,
 * `tls://HOST:PORT` (IPv6 hosts in brackets: `tcp://[::1]:7878`).
 * @param {string} url
 * @returns {{scheme: 'tcp' | 'tls' | 'unix', host?: string, port?: number, path?: string}}
 */
export function parseUrl(url) {
  if (typeof url !== 'string' || url === '')
    throw new TypeError('asyncq: server address must be a non-empty string');
  if (url.startsWith('unix:')) {
    const path = url.slice(5).replace(/^\/\//, '');
    if (!path.startsWith('/'))
      throw new TypeError(`asyncq: ${url}: expected unix:/ABSOLUTE/PATH`);
    return { scheme: 'unix', path };
  }
  let scheme = 'tcp';
  let rest = url;
  const m = /^([a-z]+):\/\/(.*)$/.exec(url);
  if (m) {
    if (m[1] !== 'tcp' && m[1] !== 'tls')
      throw new TypeError(`asyncq: ${url}: unknown scheme ${m[1]} (tcp, tls, unix)`);
    scheme = m[1];
    rest = m[2];
  }
  const hp = /^(?:\[([^\]]+)\]|([^:/\[\]]+)):(\d{1,5})\/?$/.exec(rest);
  const port = hp ? Number(hp[3]) : NaN;
  if (!hp || port < 1 || port > 65535)
    throw new TypeError(`asyncq: ${url}: expected ${scheme}://HOST:PORT`);
  return { scheme: /** @type {'tcp'|'tls'} */ (scheme), host: hp[1] ?? hp[2], port };
}

/** @param {string | Buffer | undefined} v */
function pem(v, what) {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') return v;
  try {
    return readFileSync(v);
  } catch (e) {
    throw new TransportError(`asyncq: ${what}: ${v}: ${e.message}`, { cause: e });
  }
}

/** camelCase → snake_case for the top-level names of params; drops undefined. */
function wire(params) {
  /** @type {Record<string, unknown>} */
  const out = {};
  if (params === undefined || params === null) return out;
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || k === 'signal') continue;
    out[k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())] = v;
  }
  return out;
}

/** Params of a method that takes a job id or an object (cancel, retry, delete). */
function jobOr(job, extra) {
  if (typeof job === 'object' && job !== null) return wire({ ...job, ...extra });
  return wire({ job, ...extra });
}

/** Splits an options object into the call options and the method params. */
function split(opts) {
  const { signal, ...rest } = opts ?? {};
  return [{ signal }, rest];
}

/**
 * Connects to asyncqd and, with a token, authenticates.
 * @param {string} [url] default `$ASYNCQ_SERVER`, else `tcp://127.0.0.1:7878`
 * @param {import('../index.js').ConnectOptions} [options]
 * @returns {Promise<Client>}
 */
export async function connect(url, options = {}) {
  const client = new Client(url, options);
  await client._open();
  return client;
}

/**
 * One connection to asyncqd. Every method sends one request and returns a
 * promise of its result; requests are pipelined and replies matched by id.
 * Emits `notification` (method, params) for every server notification,
 * `job.done` (record) and `job.cancel` ({job}) for those two, and `close`
 * (error or undefined) once the connection is gone.
 */
export class Client extends EventEmitter {
  /**
   * Prefer {@link connect}, which opens the connection.
   * @param {string} [url]
   * @param {import('../index.js').ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    this.url = url || process.env.ASYNCQ_SERVER || DEFAULT_SERVER;
    this._addr = parseUrl(this.url);
    this._options = options;
    /** @type {net.Socket | null} */
    this._socket = null;
    this._buf = '';
    this._nextId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, method: string, late?: Function, aborted?: boolean}>} */
    this._pending = new Map();
    /** @type {Set<(rec: any) => void>} */
    this._streams = new Set();
    /** @type {Error | null} */
    this._closed = null;
    /** @type {Array<() => void>} */
    this._drainWaiters = [];
    this._needDrain = false;
  }

  /** @returns {Promise<void>} */
  async _open() {
    const o = this._options;
    const a = this._addr;
    const timeout = (o.timeout ?? DEFAULT_TIMEOUT) * 1000;
    const socket = await new Promise((resolve, reject) => {
      /** @type {net.Socket} */
      let s;
      const ready = a.scheme === 'tls' ? 'secureConnect' : 'connect';
      const fail = (e) => {
        clearTimeout(timer);
        s?.destroy();
        reject(e instanceof TransportError ? e :
          new TransportError(`asyncq: connect ${this.url}: ${e.message}`, { cause: e }));
      };
      const timer = setTimeout(() => fail(new Error(`no answer within ${timeout / 1000} s`)), timeout);
      try {
        if (a.scheme === 'unix') {
          s = net.connect({ path: a.path });
        } else if (a.scheme === 'tcp') {
          s = net.connect({ host: a.host, port: a.port });
        } else {
          s = tls.connect({
            host: a.host,
            port: a.port,
            servername: net.isIP(a.host ?? '') ? undefined : a.host,
            ca: pem(o.ca ?? process.env.ASYNCQ_CA, 'ca'),
            cert: pem(o.cert ?? process.env.ASYNCQ_CERT, 'cert'),
            key: pem(o.key ?? process.env.ASYNCQ_KEY, 'key'),
            minVersion: 'TLSv1.2',
            rejectUnauthorized: true,
          });
        }
      } catch (e) {
        fail(e);
        return;
      }
      s.once('error', fail);
      s.once(ready, () => {
        clearTimeout(timer);
        s.off('error', fail);
        resolve(s);
      });
    });
    this._socket = socket;
    if (socket instanceof net.Socket && this._addr.scheme !== 'unix') socket.setNoDelay(true);
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => this._onData(chunk));
    socket.on('drain', () => this._wakeDrain());
    socket.on('error', (e) => {
      this._fail(new TransportError(`asyncq: ${this.url}: ${e.message}`, { cause: e }));
    });
    socket.on('close', () => {
      this._fail(new TransportError(`asyncq: ${this.url}: connection closed`));
      this.emit('close', this._closed);
    });
    socket.on('end', () => socket.end());
    const token = o.token ?? process.env.ASYNCQ_TOKEN;
    if (token !== undefined && token !== null && token !== '') {
      const t = setTimeout(() => this._fail(new TransportError(
        `asyncq: ${this.url}: auth not answered within ${timeout / 1000} s`)), timeout);
      try {
        await this.call('auth', { token: String(token) });
      } catch (e) {
        this._destroy(e);
        throw e;
      } finally {
        clearTimeout(t);
      }
    }
  }

  _onData(chunk) {
    let start = 0;
    let i = chunk.indexOf('\n');
    if (i < 0) {
      this._buf += chunk;
      return;
    }
    let line = this._buf + chunk.slice(0, i);
    this._buf = '';
    for (;;) {
      this._onLine(line);
      if (this._closed) return;
      start = i + 1;
      i = chunk.indexOf('\n', start);
      if (i < 0) break;
      line = chunk.slice(start, i);
    }
    this._buf = chunk.slice(start);
  }

  _onLine(line) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (e) {
      this._destroy(new TransportError(`asyncq: ${this.url}: the daemon sent a line that is not JSON: ${e.message}`));
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return;
    if (msg.id !== undefined && msg.id !== null) {
      const p = this._pending.get(msg.id);
      if (!p) return;
      this._pending.delete(msg.id);
      if (p.aborted) {
        if (p.late && 'result' in msg) p.late(msg.result);
        return;
      }
      if (msg.error) {
        const e = msg.error;
        p.reject(new AsyncqError(e.code, String(e.message ?? ''), e.data, p.method));
      } else {
        p.resolve(msg.result);
      }
      return;
    }
    if (typeof msg.method === 'string') {
      const params = msg.params;
      if (msg.method === 'job.done') for (const s of [...this._streams]) s(params);
      this.emit(msg.method, params);
      this.emit('notification', msg.method, params);
      return;
    }
    // An error without id (-32700/-32600 for a line of ours): nothing to
    // match it to; the connection may be closed by the daemon next.
    if (msg.error) this.emit('notification', 'error', msg.error);
  }

  _fail(err) {
    if (this._closed) return;
    this._closed = err;
    for (const p of this._pending.values()) if (!p.aborted) p.reject(err);
    this._pending.clear();
    this._wakeDrain();
  }

  _destroy(err) {
    this._fail(err);
    this._socket?.destroy();
  }

  _wakeDrain() {
    this._needDrain = false;
    const w = this._drainWaiters;
    this._drainWaiters = [];
    for (const f of w) f();
  }

  /** Resolves once the socket's write buffer has drained (or it closed). */
  _drained() {
    if (!this._needDrain || this._closed) return Promise.resolve();
    return new Promise((resolve) => this._drainWaiters.push(resolve));
  }

  /** True once the connection is closed (by close() or otherwise). */
  get closed() {
    return this._closed !== null;
  }

  /**
   * Sends any method. `late` (internal) receives the result of a request
   * whose caller aborted.
   * @param {string} method
   * @param {object} [params]
   * @param {{signal?: AbortSignal, late?: (result: any) => void}} [opts]
   * @returns {Promise<any>}
   */
  call(method, params, opts = {}) {
    const { signal, late } = opts;
    if (this._closed) return Promise.reject(this._closed);
    if (!this._socket)
      return Promise.reject(new TransportError(`asyncq: ${this.url}: not connected (use connect())`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this._nextId++;
    const msg = { jsonrpc: '2.0', id, method };
    if (params !== undefined) msg.params = params;
    let line;
    try {
      line = JSON.stringify(msg) + '\n';
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, method, late };
      if (signal) {
        const onAbort = () => {
          if (this._pending.get(id) !== entry) return;
          entry.aborted = true; // the reply, when it comes, is dropped (or given to late)
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        entry.resolve = (v) => { signal.removeEventListener('abort', onAbort); resolve(v); };
        entry.reject = (e) => { signal.removeEventListener('abort', onAbort); reject(e); };
      }
      this._pending.set(id, entry);
      if (!this._socket.write(line)) this._needDrain = true;
    });
  }

  /**
   * Closes the connection. Requests still unanswered reject with a
   * TransportError. Resolves once the socket is closed.
   * @returns {Promise<void>}
   */
  close() {
    const s = this._socket;
    this._fail(new TransportError(`asyncq: ${this.url}: closed by the client`));
    if (!s || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      s.once('close', () => resolve());
      s.end();
      // The daemon answers our FIN with its own; do not wait forever.
      setTimeout(() => s.destroy(), 2000).unref();
    });
  }

  // ---- producer methods ----

  /**
   * Puts one job. Params as on the wire (SPEC §2, §11), camelCase allowed
   * (`afterPolicy`). Durations in seconds.
   * @param {import('../index.js').PutParams} [params]
   * @param {import('../index.js').CallOptions} [opts]
   */
  put(params = {}, opts = {}) {
    return this.call('put', wire(params), opts);
  }

  /**
   * Puts many jobs, pipelined: at most `window` puts are unanswered at once,
   * and nothing more is written while the socket's buffer is full, so a
   * full queue (whose puts the daemon holds back) stops the producer and
   * memory stays bounded. Yields each put's result in input order.
   * @param {Iterable<object> | AsyncIterable<object>} items
   * @param {import('../index.js').PutManyOptions} [opts]
   */
  async *putStream(items, opts = {}) {
    const window = opts.window ?? DEFAULT_WINDOW;
    const signal = opts.signal;
    if (!Number.isInteger(window) || window < 1)
      throw new RangeError('asyncq: putMany: window must be an integer ≥ 1');
    const it = items[Symbol.asyncIterator] ? items[Symbol.asyncIterator]() : items[Symbol.iterator]();
    /** @type {Promise<any>[]} */
    const inflight = [];
    let head = 0;
    let exhausted = false;
    try {
      for (;;) {
        while (!exhausted && inflight.length - head < window) {
          const n = await it.next();
          if (n.done) {
            exhausted = true;
            break;
          }
          signal?.throwIfAborted();
          const p = this.call('put', wire(n.value), { signal });
          p.catch(() => {}); // awaited below, in order
          inflight.push(p);
          if (this._needDrain) await this._drained();
        }
        if (head === inflight.length) return;
        const p = inflight[head];
        inflight[head++] = undefined;
        if (head > 1024 && head * 2 > inflight.length) {
          inflight.splice(0, head);
          head = 0;
        }
        try {
          yield await p;
        } catch (e) {
          if (opts.errors === 'return' && e instanceof AsyncqError) yield e;
          else throw e;
        }
      }
    } finally {
      if (!exhausted) await it.return?.();
    }
  }

  /**
   * {@link putStream} collected into an array of results, in input order.
   * The first error rejects (jobs already put stay put), unless
   * `errors: 'return'`, which puts the AsyncqError in the array instead.
   * @param {Iterable<object> | AsyncIterable<object>} items
   * @param {import('../index.js').PutManyOptions} [opts]
   */
  async putMany(items, opts = {}) {
    const out = [];
    for await (const r of this.putStream(items, opts)) out.push(r);
    return out;
  }

  /** @param {number} job @param {import('../index.js').CallOptions} [opts] */
  status(job, opts = {}) {
    return this.call('status', { job }, opts);
  }

  /**
   * Waits for jobs: mode `all` (records in the order given), `any` (a list
   * of the first finished) or `stream` (see {@link asCompleted}).
   * @param {number[]} jobs
   * @param {import('../index.js').WaitOptions} [opts]
   */
  wait(jobs, opts = {}) {
    const [call, rest] = split(opts);
    return this.call('wait', wire({ jobs, ...rest }), call);
  }

  /**
   * Yields each job's record as it finishes (`wait` in `stream` mode).
   * Breaking out of the loop stops listening (the daemon's wait goes on
   * until its jobs finish or its timeout).
   * @param {number[]} jobs
   * @param {Omit<import('../index.js').WaitOptions, 'mode'>} [opts]
   * @returns {AsyncGenerator<import('../index.js').JobRecord, void, undefined>}
   */
  async *asCompleted(jobs, opts = {}) {
    const [call, rest] = split(opts);
    const want = new Set(jobs);
    /** @type {any[]} */
    const ready = [];
    let wake = null;
    let done = false;
    let final = null;
    let error = null;
    const listener = (rec) => {
      if (rec && want.delete(rec.job)) {
        ready.push(rec);
        wake?.();
      }
    };
    this._streams.add(listener);
    this.call('wait', wire({ jobs: [...want], ...rest, mode: 'stream' }), call).then(
      (r) => { final = r; },
      (e) => { error = e; },
    ).finally(() => {
      done = true;
      wake?.();
    });
    try {
      for (let i = 0; ;) {
        if (i < ready.length) {
          const rec = ready[i];
          ready[i++] = undefined;
          yield rec;
          continue;
        }
        if (done) {
          if (error) throw error;
          for (const rec of final ?? []) if (rec && want.delete(rec.job)) yield rec;
          return;
        }
        await new Promise((r) => { wake = r; });
        wake = null;
      }
    } finally {
      this._streams.delete(listener);
    }
  }

  /**
   * Waits until the queue (default: every queue) has no unfinished job.
   * @param {string} [queue]
   * @param {import('../index.js').JoinOptions} [opts]
   */
  join(queue, opts = {}) {
    const [call, rest] = split(opts);
    return this.call('join', wire({ queue, ...rest }), call);
  }

  /**
   * Cancels a job (by id), or with `{queue, running}` every delayed and
   * pending (and with running: true, running) job of a queue.
   * @param {number | {queue: string, running?: boolean}} job
   * @param {import('../index.js').CallOptions} [opts]
   */
  cancel(job, opts = {}) {
    return this.call('cancel', jobOr(job), opts);
  }

  /**
   * One page of job records: `{jobs, next}`.
   * @param {import('../index.js').ListFilter} [filter]
   * @param {import('../index.js').CallOptions} [opts]
   */
  list(filter = {}, opts = {}) {
    return this.call('list', wire(filter), opts);
  }

  /**
   * Every record matching the filter, page after page.
   * @param {import('../index.js').ListFilter} [filter]
   * @param {import('../index.js').CallOptions} [opts]
   */
  async *listAll(filter = {}, opts = {}) {
    const f = { ...filter };
    const cursor = f.order === 'desc' ? 'before' : 'after';
    for (;;) {
      const page = await this.list(f, opts);
      yield* page.jobs;
      if (page.next === null || page.next === undefined) return;
      f[cursor] = page.next;
    }
  }

  /**
   * Runs a finished job again (by id, `{delay}` in opts), or with
   * `{queue, state, delay}` every failed or cancelled job of a queue.
   * @param {number | {queue: string, state: 'failed' | 'cancelled', delay?: number}} job
   * @param {{delay?: number, signal?: AbortSignal}} [opts]
   */
  retry(job, opts = {}) {
    const [call, rest] = split(opts);
    return this.call('retry', jobOr(job, rest), call);
  }

  /**
   * Drops a finished record (by id), or with `{queue, state}` all of them.
   * @param {number | {queue: string, state: 'done' | 'failed' | 'cancelled'}} job
   * @param {import('../index.js').CallOptions} [opts]
   */
  delete(job, opts = {}) {
    return this.call('delete', jobOr(job), opts);
  }

  /**
   * The daemon's counters, of one queue or all; with `{batch}` in opts,
   * that batch's jobs counted by state.
   * @param {string} [queue]
   * @param {import('../index.js').CallOptions & {batch?: string}} [opts]
   */
  stats(queue, opts = {}) {
    const [call, rest] = split(opts);
    return this.call('stats', wire({ queue, ...rest }), call);
  }

  /**
   * The daemon's schedules (SPEC §11) with their next and last fire times,
   * or the one named.
   * @param {string} [name]
   * @param {import('../index.js').CallOptions} [opts]
   */
  async schedules(name, opts = {}) {
    return (await this.call('schedules', wire({ name }), opts)).schedules;
  }

  /** @param {string} queue @param {import('../index.js').CallOptions} [opts] */
  pause(queue, opts = {}) {
    return this.call('pause', { queue }, opts);
  }

  /** @param {string} queue @param {import('../index.js').CallOptions} [opts] */
  resume(queue, opts = {}) {
    return this.call('resume', { queue }, opts);
  }

  /** @param {string} queue @param {number} consumers @param {import('../index.js').CallOptions} [opts] */
  scale(queue, consumers, opts = {}) {
    return this.call('scale', { queue, consumers }, opts);
  }

  /** @param {import('../index.js').CallOptions} [opts] @returns {Promise<'pong'>} */
  ping(opts = {}) {
    return this.call('ping', undefined, opts);
  }

  // ---- raw worker methods (the Worker class drives them for you) ----

  /**
   * Leases up to `max` jobs of a remote queue, waiting up to `wait` s.
   * @param {import('../index.js').GetParams} params
   * @param {import('../index.js').CallOptions} [opts]
   */
  get(params, opts = {}) {
    return this.call('get', wire(params), opts);
  }

  /**
   * Ends a leased job: `{result}` or `{error: {code, message, traceback}}`,
   * and `retry: false` for no further attempt.
   * @param {number} job
   * @param {{result?: unknown, error?: {code: string, message: string, traceback?: string}, retry?: boolean}} [outcome]
   * @param {import('../index.js').CallOptions} [opts]
   */
  taskDone(job, outcome = {}, opts = {}) {
    return this.call('task_done', wire({ job, ...outcome }), opts);
  }

  /** @param {number} job @param {{lease?: number, signal?: AbortSignal}} [opts] */
  touch(job, opts = {}) {
    const [call, rest] = split(opts);
    return this.call('touch', wire({ job, ...rest }), call);
  }

  /** @param {number} job @param {{delay?: number, signal?: AbortSignal}} [opts] */
  release(job, opts = {}) {
    const [call, rest] = split(opts);
    return this.call('release', wire({ job, ...rest }), call);
  }
}

if (typeof Symbol.asyncDispose === 'symbol') {
  Object.defineProperty(Client.prototype, Symbol.asyncDispose, {
    value: function asyncDispose() { return this.close(); },
    writable: true,
    configurable: true,
  });
}
