// SPDX-License-Identifier: MIT
// The worker side: long-poll `get` for the free slots, run handlers by job
// name, renew leases while they run, `task_done` their outcome, and stop
// cleanly (finish, or release what is still held).

import { EventEmitter } from 'node:events';

import { Client, connect } from './client.js';
import { AsyncqError, ErrorCode, TransportError } from './errors.js';

const MAX_TRACEBACK = 60 * 1024; // the daemon keeps up to 64 KiB
const EMPTY_BACKOFF = 500; // ms before the next get after an early empty answer

function abortError(message) {
  return new DOMException(message, 'AbortError');
}

function truncate(s, max) {
  if (Buffer.byteLength(s) <= max) return s;
  return Buffer.from(s).subarray(0, max).toString('utf8') + '\n[truncated]';
}

/**
 * The error object a handler's exception becomes in `task_done`: code
 * `err.code` when it is a string, else "exception"; the message; the stack
 * as `traceback`.
 * @param {unknown} err
 */
export function errorOf(err) {
  const e = /** @type {any} */ (err);
  const isObj = e !== null && typeof e === 'object';
  const code = isObj && typeof e.code === 'string' && e.code !== '' ? e.code : 'exception';
  const message = err instanceof Error ? err.message : isObj && typeof e.message === 'string'
    ? e.message : String(err);
  /** @type {{code: string, message: string, traceback?: string}} */
  const out = { code, message };
  if (isObj && typeof e.stack === 'string') out.traceback = truncate(e.stack, MAX_TRACEBACK);
  return out;
}

/**
 * Runs handlers for the jobs of remote queues.
 *
 * Events, once the daemon has taken the outcome: `done` (job, result),
 * `failed` (job, error, state) when a handler threw (state: the job's state
 * now, "delayed" or "pending" when it will be retried); `cancelled` (job)
 * on a job.cancel, `released` (job) at stop, and
 * `warning` (error) for what does not stop the worker (a touch or
 * task_done the daemon refused, a handler without a name match...).
 */
export class Worker extends EventEmitter {
  /**
   * @param {string | Client | undefined} server a URL (the worker opens its
   *   own connection and closes it at the end) or a connected Client (left open)
   * @param {import('../index.js').WorkerOptions} [options]
   */
  constructor(server, options = {}) {
    super();
    const o = options;
    this._server = server;
    this._options = o;
    const q = o.queues ?? o.queue ?? 'default';
    this.queues = Array.isArray(q) ? [...q] : [q];
    if (this.queues.length === 0) throw new TypeError('asyncq: Worker: queues is empty');
    this.concurrency = o.concurrency ?? 1;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1)
      throw new RangeError('asyncq: Worker: concurrency must be an integer ≥ 1');
    this.lease = o.lease;
    this.pollWait = o.wait ?? 5;
    this.maxPerGet = Math.min(o.maxPerGet ?? 64, 1000);
    this.grace = o.grace ?? 10;
    this.handleSignals = o.handleSignals ?? false;
    /** @type {Map<string, Function>} */
    this._handlers = new Map();
    /** @type {Function | null} */
    this._default = o.handler ?? null;
    /** @type {Map<number, any>} */
    this._active = new Map();
    /** @type {Client | null} */
    this.client = null;
    this._stopping = false;
    this._running = false;
    /** @type {Error | null} */
    this._fatal = null;
    this._wake = null;
    this._now = null; // resolves to skip the grace
    /** @type {{p: Promise<any>, ac: AbortController} | null} */
    this._get = null; // the get in flight
    this._runPromise = null;
    this._stopResolve = null;
    this._stopped = new Promise((r) => { this._stopResolve = r; });
    /** Resolves at stop() or when the connection is lost. */
    this._halt = new Promise((r) => { this._haltResolve = r; });
  }

  /**
   * Registers a handler for jobs put with this `name`; with one argument,
   * the default handler (for jobs without a name, or a name without its own).
   * @param {string | Function} name
   * @param {Function} [fn]
   * @returns {this}
   */
  handle(name, fn) {
    if (typeof name === 'function') {
      this._default = name;
    } else {
      if (typeof fn !== 'function') throw new TypeError('asyncq: handle(name, fn): fn must be a function');
      this._handlers.set(name, fn);
    }
    return this;
  }

  /** Jobs whose handler is running now. */
  get running() {
    return this._active.size;
  }

  _poke() {
    const w = this._wake;
    this._wake = null;
    w?.();
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this._wake = null; resolve(); }, ms);
      this._wake = () => { clearTimeout(t); resolve(); };
    });
  }

  /**
   * Takes and runs jobs until {@link stop} (or SIGTERM/SIGINT with
   * `handleSignals`), then finishes: resolves once every job is done or
   * released. Rejects if the connection is lost or the daemon refuses the
   * `get` (an unknown queue, one that is not remote).
   * @returns {Promise<void>}
   */
  run() {
    if (this._runPromise) return this._runPromise;
    this._runPromise = this._run();
    return this._runPromise;
  }

  async _run() {
    this._running = true;
    const own = !(this._server instanceof Client);
    const sigs = [];
    try {
      this.client = own ? await connect(/** @type {string|undefined} */ (this._server), this._options)
        : /** @type {Client} */ (this._server);
      const onCancel = (p) => this._onCancel(p?.job);
      const onClose = (err) => this._onClose(err);
      this.client.on('job.cancel', onCancel);
      this.client.on('close', onClose);
      if (this.handleSignals) {
        for (const s of ['SIGTERM', 'SIGINT']) {
          const h = () => this.stop(this._stopping ? { grace: 0 } : {});
          process.on(s, h);
          sigs.push([s, h]);
        }
      }
      try {
        await this._loop();
        await this._finish();
      } finally {
        this.client.off('job.cancel', onCancel);
        this.client.off('close', onClose);
      }
      if (this._fatal && !this._stopping) throw this._fatal;
    } finally {
      for (const [s, h] of sigs) process.off(s, h);
      if (own && this.client) await this.client.close();
      this._running = false;
      this._stopping = true;
      this._stopResolve();
    }
  }

  async _loop() {
    while (!this._stopping && !this._fatal) {
      const free = this.concurrency - this._active.size;
      if (free <= 0) {
        await new Promise((r) => { this._wake = r; });
        continue;
      }
      const ac = new AbortController();
      const t0 = Date.now();
      const getP = this.client.get({
        queue: this.queues.length === 1 ? this.queues[0] : this.queues,
        max: Math.min(free, this.maxPerGet),
        wait: this.pollWait,
        lease: this.lease,
      }, { signal: ac.signal, late: (js) => this._releaseAll(js) });
      getP.catch(() => {});
      this._get = { p: getP, ac };
      // Stopping does not wait for the get here: _finish() does, alongside
      // the handlers' grace.
      const r = await Promise.race([
        getP.then((jobs) => ({ jobs }), (err) => ({ err })),
        this._halt.then(() => ({})),
      ]);
      if (!r.jobs && !r.err) break; // stop() or a lost connection
      this._get = null;
      if (r.err) {
        const e = r.err;
        if (this._stopping || this._fatal) break;
        if (e instanceof AsyncqError && e.code === ErrorCode.SHUTTING_DOWN) {
          await this._sleep(EMPTY_BACKOFF);
          continue;
        }
        if (e instanceof TransportError) {
          this._fatal = e;
          break;
        }
        throw e;
      }
      const jobs = r.jobs;
      if (this._stopping) {
        await this._releaseAll(jobs);
        break;
      }
      for (const j of jobs) this._start(j);
      // An empty answer long before its wait: the daemon is stopping (or
      // wait is 0); do not spin.
      if (jobs.length === 0 && (this.pollWait === 0 || Date.now() - t0 < this.pollWait * 500))
        await this._sleep(EMPTY_BACKOFF);
    }
  }

  async _releaseAll(jobs) {
    if (!Array.isArray(jobs)) return;
    await Promise.all(jobs.map((j) => this.client.release(j.job).then(
      () => this.emit('released', this._view(j)), () => {})));
  }

  _view(j) {
    return {
      id: j.job,
      queue: j.queue,
      name: j.name,
      args: j.args,
      attempts: j.attempts,
      leaseDeadline: j.lease_deadline,
    };
  }

  _start(j) {
    const job = this._view(j);
    const ctl = new AbortController();
    const entry = { job, ctl, timer: null, over: false, settled: null };
    this._active.set(job.id, entry);
    // Renew at a third of the lease's length (the daemon renews by the
    // length it granted when touch names none).
    let len = this.lease ?? (j.lease_deadline - Date.now() / 1000);
    if (!Number.isFinite(len) || len <= 0) len = 30;
    const every = Math.max(len / 3, 0.05) * 1000;
    entry.timer = setInterval(() => this._touch(entry), every);
    const fn = (job.name !== undefined && this._handlers.get(job.name)) || this._default;
    const client = this.client;
    const ctx = {
      signal: ctl.signal,
      client,
      worker: this,
      touch: (lease) => client.touch(job.id, { lease }),
    };
    entry.settled = (async () => {
      let outcome;
      let thrown;
      try {
        if (!fn) {
          const e = new Error(`no handler for job name ${JSON.stringify(job.name ?? null)}`);
          e.code = 'no_handler';
          throw e;
        }
        const result = await fn(job, ctx);
        outcome = { result: result === undefined ? null : result };
      } catch (err) {
        thrown = err;
        outcome = { error: errorOf(err) };
        if (err && typeof err === 'object' && err.retry === false) outcome.retry = false;
      }
      if (!entry.holding) clearInterval(entry.timer);
      if (!entry.over) {
        entry.over = true;
        try {
          const r = await client.taskDone(job.id, outcome);
          if (outcome.error) this.emit('failed', job, thrown, r.state);
          else this.emit('done', job, outcome.result);
        } catch (e) {
          if (!(e instanceof TransportError)) this.emit('warning', e);
        }
      }
      this._active.delete(job.id);
      this._poke();
    })();
  }

  async _touch(entry) {
    if (entry.over && !entry.holding) return;
    try {
      await this.client.touch(entry.job.id);
    } catch (e) {
      if ((entry.over && !entry.holding) || !(e instanceof AsyncqError)) return;
      entry.holding = false;
      // -32009: cancelled; -32014/-32004: the lease is gone. Either way a
      // task_done would be refused: stop the handler.
      this._abandon(entry, e.code === ErrorCode.JOB_FINISHED ? 'cancelled' : 'lease lost');
      this.emit('warning', e);
    }
  }

  _abandon(entry, why) {
    entry.over = true;
    clearInterval(entry.timer);
    entry.ctl.abort(abortError(`asyncq: job ${entry.job.id}: ${why}`));
  }

  _onCancel(id) {
    const entry = this._active.get(id);
    if (!entry || entry.over) return;
    this._abandon(entry, 'cancelled');
    this.emit('cancelled', entry.job);
  }

  _onClose(err) {
    this._fatal = err ?? new TransportError('asyncq: connection closed');
    for (const entry of this._active.values()) {
      entry.holding = false;
      if (!entry.over) this._abandon(entry, 'connection lost');
      clearInterval(entry.timer);
    }
    this._get?.ac.abort(this._fatal);
    this._haltResolve();
    this._poke();
  }

  /**
   * Waits for the running handlers up to the grace, then releases the
   * rest; and for the get still in flight (see below).
   */
  async _finish() {
    // The get is settled before anything is released: released jobs would
    // go straight back to it.
    const got = this._finishGet();
    const held = await this._finishHandlers();
    await got;
    await Promise.all(held.map(async (entry) => {
      clearInterval(entry.timer);
      entry.timer = null;
      try {
        await this.client.release(entry.job.id);
        this.emit('released', entry.job);
      } catch (e) {
        if (!(e instanceof TransportError)) this.emit('warning', e);
      }
    }));
  }

  /**
   * A get still waiting would be handed jobs even after the connection is
   * closed (the daemon answers a half-closed connection, and cannot tell a
   * closed one until it writes): those attempts would end worker_lost. So
   * on its own connection the worker waits for the get's answer (at most
   * its wait) and releases what it brings; on a shared client, which stays
   * open, the late answer is released whenever it comes.
   */
  async _finishGet() {
    const g = this._get;
    this._get = null;
    if (!g) return;
    if (this._server instanceof Client || this._fatal) {
      g.ac.abort(abortError('asyncq: worker stopping'));
      return;
    }
    let timer;
    const r = await Promise.race([
      g.p.then((jobs) => jobs, () => null),
      new Promise((resolve) => { timer = setTimeout(resolve, this.pollWait * 1000 + 2000, null); }),
    ]);
    clearTimeout(timer);
    if (r) await this._releaseAll(r);
    else g.ac.abort(abortError('asyncq: worker stopping'));
  }

  /** Waits up to the grace; returns the entries still running then. */
  async _finishHandlers() {
    if (this._active.size === 0) return [];
    const graceMs = this._graceMs ?? this.grace * 1000;
    let timer;
    const all = Promise.all([...this._active.values()].map((e) => e.settled));
    await Promise.race([
      all,
      new Promise((r) => { timer = setTimeout(r, graceMs); this._now = r; }),
    ]);
    clearTimeout(timer);
    const held = [...this._active.values()].filter((e) => !e.over);
    for (const entry of held) {
      // No task_done any more; the lease is still renewed until released.
      entry.over = true;
      entry.holding = true;
      entry.ctl.abort(abortError(`asyncq: job ${entry.job.id}: worker stopping`));
    }
    return held;
  }

  /**
   * Stops taking jobs; running handlers get `grace` seconds (the option's
   * by default) to finish, then their jobs are released and their signals
   * aborted. Resolves when run() has ended. A second call with a smaller
   * grace shortens it (`{grace: 0}`: release now).
   * @param {{grace?: number}} [opts]
   * @returns {Promise<void>}
   */
  stop(opts = {}) {
    const graceMs = (opts.grace ?? this.grace) * 1000;
    if (!this._stopping) {
      this._stopping = true;
      this._graceMs = graceMs;
      this._haltResolve();
      this._poke();
    } else if (graceMs === 0) {
      this._graceMs = 0;
      this._now?.();
    }
    if (!this._runPromise) return Promise.resolve();
    return this._stopped;
  }
}
