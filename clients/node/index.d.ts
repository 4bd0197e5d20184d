// SPDX-License-Identifier: MIT
// Type declarations of the asyncq Node.js client (kept by hand, in step
// with lib/*.js).

/// <reference types="node" />

import { EventEmitter } from 'node:events';

/** Durations are seconds (fractions allowed), as on the wire. */
export type Seconds = number;
export type JobId = number;
export type JobState =
  | 'delayed' | 'waiting' | 'pending' | 'running' | 'done' | 'failed' | 'cancelled';

export interface ConnectOptions {
  /** Sent with `auth` right after connecting. Default: `$ASYNCQ_TOKEN`. */
  token?: string;
  /** tls://: CA certificate(s) to verify the server, a file path or PEM. Default: `$ASYNCQ_CA`, else the system CAs. */
  ca?: string | Buffer;
  /** tls://: client certificate (mutual TLS), a file path or PEM. Default: `$ASYNCQ_CERT`. */
  cert?: string | Buffer;
  /** tls://: the client certificate's key, a file path or PEM. Default: `$ASYNCQ_KEY`. */
  key?: string | Buffer;
  /** Seconds allowed for connect, TLS handshake and auth. Default 10. */
  timeout?: Seconds;
}

export interface CallOptions {
  /** Stops waiting for the reply (the promise rejects with `signal.reason`); the daemon is not told. */
  signal?: AbortSignal;
}

export interface ErrorObject {
  code: string;
  message: string;
  traceback?: string;
}

/** A job record (SPEC §2, §9, §10). */
export interface JobRecord {
  job: JobId;
  queue: string;
  kind: string;
  state: JobState;
  priority: number;
  attempts: number;
  created: number;
  args?: unknown;
  name?: string;
  batch?: string;
  key?: string;
  due?: number;
  after?: JobId[];
  started?: number;
  finished?: number;
  result?: unknown;
  error?: ErrorObject;
  retried?: number;
  worker?: string;
  lease_deadline?: number;
  [field: string]: unknown;
}

export interface PutParams {
  queue?: string;
  kind?: string;
  args?: Record<string, unknown>;
  name?: string;
  priority?: number;
  delay?: Seconds;
  /** Epoch seconds or an RFC 3339 string (not with delay). */
  at?: number | string;
  timeout?: Seconds;
  retries?: number;
  key?: string;
  batch?: string;
  after?: JobId[];
  afterPolicy?: 'done' | 'finished';
  /** Reply with the finished record. */
  wait?: boolean;
  /** Fail with QUEUE_FULL instead of waiting for room. */
  nowait?: boolean;
  [param: string]: unknown;
}

export interface PutResult {
  job: JobId;
  state: 'pending' | 'delayed' | 'waiting';
  duplicate?: true;
}

export interface PutManyOptions extends CallOptions {
  /** Puts unanswered at once (default 512). */
  window?: number;
  /** 'throw' (default): the first error rejects; 'return': it takes that put's place. */
  errors?: 'throw' | 'return';
}

export interface WaitOptions extends CallOptions {
  mode?: 'all' | 'any' | 'stream';
  timeout?: Seconds;
  cancelOnTimeout?: boolean;
}

export interface JoinOptions extends CallOptions {
  timeout?: Seconds;
  batch?: string;
}

export interface ListFilter {
  queue?: string;
  state?: JobState | JobState[];
  name?: string;
  batch?: string;
  after?: JobId;
  before?: JobId;
  limit?: number;
  order?: 'asc' | 'desc';
}

export interface ListPage {
  jobs: JobRecord[];
  next: JobId | null;
}

export interface QueueStats {
  size: number;
  delayed: number;
  running: number;
  unfinished: number;
  maxsize: number;
  consumers: number;
  busy: number;
  paused: boolean;
  kind: string;
  workers?: number;
  put: number;
  done: number;
  failed: number;
  cancelled: number;
  retried: number;
  [field: string]: unknown;
}

/** stats with batch: that batch's jobs (unfinished, and records kept). */
export interface BatchStats {
  batch: string;
  total: number;
  unfinished: number;
  delayed: number;
  waiting: number;
  pending: number;
  running: number;
  done: number;
  failed: number;
  cancelled: number;
}

/** One schedule of the daemon's config (SPEC §11). */
export interface Schedule {
  name: string;
  cron: string;
  timezone: string;
  queue: string;
  kind: string;
  overlap: 'skip' | 'allow';
  catch_up: 'one' | 'none';
  /** Epoch seconds, or null. */
  next: number | null;
  last: number | null;
  last_job: JobId | null;
  fired: number;
  skipped: number;
  [field: string]: unknown;
}

export interface Stats {
  uptime: number;
  version: string;
  pid: number;
  connections: number;
  queues: Record<string, QueueStats>;
  [field: string]: unknown;
}

export interface GetParams {
  /** A queue, or queues in order of preference. */
  queue: string | string[];
  /** 1..1000, default 1. */
  max?: number;
  /** Seconds to wait when no job is ready (default 30; 0 = answer at once). */
  wait?: Seconds;
  /** Lease length (default: the job's timeout). */
  lease?: Seconds;
}

/** A job as `get` returns it (wire names). */
export interface LeasedJob {
  job: JobId;
  queue: string;
  name?: string;
  args: any;
  attempts: number;
  lease_deadline: number;
}

export interface TaskOutcome {
  result?: unknown;
  error?: ErrorObject;
  /** false: no further attempt. */
  retry?: boolean;
}

export declare const DEFAULT_SERVER: 'tcp://127.0.0.1:7878';

export declare function parseUrl(url: string): {
  scheme: 'tcp' | 'tls' | 'unix';
  host?: string;
  port?: number;
  path?: string;
};

/** Connects (and authenticates). URL default: `$ASYNCQ_SERVER`, else tcp://127.0.0.1:7878. */
export declare function connect(url?: string, options?: ConnectOptions): Promise<Client>;

export declare class Client extends EventEmitter {
  /** Use connect(); a Client made with `new` is not connected. */
  constructor(url?: string, options?: ConnectOptions);
  readonly url: string;
  readonly closed: boolean;

  call(method: string, params?: object, opts?: CallOptions): Promise<any>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;

  put(params?: PutParams & { wait?: false }, opts?: CallOptions): Promise<PutResult>;
  put(params: PutParams & { wait: true }, opts?: CallOptions): Promise<JobRecord>;
  putMany(items: Iterable<PutParams> | AsyncIterable<PutParams>, opts?: PutManyOptions & { errors?: 'throw' }): Promise<PutResult[]>;
  putMany(items: Iterable<PutParams> | AsyncIterable<PutParams>, opts: PutManyOptions & { errors: 'return' }): Promise<Array<PutResult | AsyncqError>>;
  putStream(items: Iterable<PutParams> | AsyncIterable<PutParams>, opts?: PutManyOptions): AsyncGenerator<PutResult | AsyncqError, void, undefined>;
  status(job: JobId, opts?: CallOptions): Promise<JobRecord>;
  wait(jobs: JobId[], opts?: WaitOptions): Promise<JobRecord[]>;
  asCompleted(jobs: JobId[], opts?: Omit<WaitOptions, 'mode'>): AsyncGenerator<JobRecord, void, undefined>;
  join(queue?: string, opts?: JoinOptions): Promise<{ queue: string } | { batch: string }>;
  cancel(job: JobId, opts?: CallOptions): Promise<{ job: JobId; state: JobState }>;
  cancel(which: { queue: string; running?: boolean }, opts?: CallOptions): Promise<{ cancelled: number }>;
  list(filter?: ListFilter, opts?: CallOptions): Promise<ListPage>;
  listAll(filter?: ListFilter, opts?: CallOptions): AsyncGenerator<JobRecord, void, undefined>;
  retry(job: JobId, opts?: CallOptions & { delay?: Seconds }): Promise<{ job: JobId; state: 'pending' | 'delayed' }>;
  retry(which: { queue: string; state: 'failed' | 'cancelled'; delay?: Seconds }, opts?: CallOptions): Promise<{ retried: number }>;
  delete(job: JobId, opts?: CallOptions): Promise<{ job: JobId; deleted: true }>;
  delete(which: { queue: string; state: 'done' | 'failed' | 'cancelled' }, opts?: CallOptions): Promise<{ deleted: number }>;
  stats(queue?: string, opts?: CallOptions): Promise<Stats>;
  stats(queue: undefined, opts: CallOptions & { batch: string }): Promise<BatchStats>;
  schedules(name?: string, opts?: CallOptions): Promise<Schedule[]>;
  pause(queue: string, opts?: CallOptions): Promise<{ queue: string; paused: true }>;
  resume(queue: string, opts?: CallOptions): Promise<{ queue: string; paused: false }>;
  scale(queue: string, consumers: number, opts?: CallOptions): Promise<{ queue: string; consumers: number }>;
  ping(opts?: CallOptions): Promise<'pong'>;

  get(params: GetParams, opts?: CallOptions): Promise<LeasedJob[]>;
  taskDone(job: JobId, outcome?: TaskOutcome, opts?: CallOptions): Promise<{ job: JobId; state: 'done' | 'pending' | 'delayed' | 'failed' }>;
  touch(job: JobId, opts?: CallOptions & { lease?: Seconds }): Promise<{ job: JobId; lease_deadline: number }>;
  release(job: JobId, opts?: CallOptions & { delay?: Seconds }): Promise<{ job: JobId; state: 'pending' | 'delayed' }>;

  on(event: 'job.done', listener: (record: JobRecord) => void): this;
  on(event: 'job.cancel', listener: (params: { job: JobId }) => void): this;
  on(event: 'notification', listener: (method: string, params: any) => void): this;
  on(event: 'close', listener: (error: TransportError | null) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** What a handler gets: the leased job in JS names. */
export interface Job {
  id: JobId;
  queue: string;
  name?: string;
  args: any;
  /** Attempts that ended before this one. */
  attempts: number;
  leaseDeadline: number;
}

export interface HandlerContext {
  /** Aborted on job.cancel, a lost lease, a lost connection, or at stop past the grace. */
  signal: AbortSignal;
  client: Client;
  worker: Worker;
  /** Renews the lease now (the worker does it by itself at a third of the lease). */
  touch(lease?: Seconds): Promise<{ job: JobId; lease_deadline: number }>;
}

export type Handler = (job: Job, ctx: HandlerContext) => unknown | Promise<unknown>;

export interface WorkerOptions extends ConnectOptions {
  /** Queue(s) to take from, in order of preference. Default 'default'. */
  queues?: string | string[];
  queue?: string;
  /** Handlers running at once. Default 1. */
  concurrency?: number;
  /** Lease length asked for (default: the job's timeout). */
  lease?: Seconds;
  /** The get's long-poll wait, seconds; a stop waits for the get in flight, so at most this long. Default 5. */
  wait?: Seconds;
  /** At most this many jobs per get (≤ 1000). Default 64. */
  maxPerGet?: number;
  /** Seconds running handlers get at stop before their jobs are released. Default 10. */
  grace?: Seconds;
  /** Stop on SIGTERM/SIGINT (a second signal skips the grace). Default false. */
  handleSignals?: boolean;
  /** The default handler. */
  handler?: Handler;
}

export declare class Worker extends EventEmitter {
  constructor(server?: string | Client, options?: WorkerOptions);
  readonly queues: string[];
  readonly concurrency: number;
  /** Handlers running now. */
  readonly running: number;
  /** The connection (set once run() has connected). */
  client: Client | null;
  handle(name: string, handler: Handler): this;
  handle(defaultHandler: Handler): this;
  run(): Promise<void>;
  stop(opts?: { grace?: Seconds }): Promise<void>;

  on(event: 'done', listener: (job: Job, result: unknown) => void): this;
  on(event: 'failed', listener: (job: Job, error: unknown, state: JobState) => void): this;
  on(event: 'cancelled' | 'released', listener: (job: Job) => void): this;
  on(event: 'warning', listener: (error: Error) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** The task_done error object a thrown value becomes. */
export declare function errorOf(err: unknown): ErrorObject;

export declare const ErrorCode: {
  readonly PARSE_ERROR: -32700;
  readonly INVALID_REQUEST: -32600;
  readonly METHOD_NOT_FOUND: -32601;
  readonly INVALID_PARAMS: -32602;
  readonly INTERNAL_ERROR: -32603;
  readonly QUEUE_FULL: -32000;
  readonly UNAUTHORIZED: -32001;
  readonly NO_SUCH_QUEUE: -32002;
  readonly NO_SUCH_JOB: -32004;
  readonly NOT_ALLOWED: -32005;
  readonly TIMEOUT: -32008;
  readonly JOB_FINISHED: -32009;
  readonly SHUTTING_DOWN: -32010;
  readonly TOO_MANY_CONNECTIONS: -32011;
  readonly JOB_NOT_FINISHED: -32012;
  readonly NOT_YOUR_LEASE: -32014;
};

/** An error the daemon answered. */
export declare class AsyncqError extends Error {
  constructor(code: number, message: string, data?: unknown, method?: string);
  readonly code: number;
  /** The code's name in lower case: 'no_such_job', 'queue_full', ... ('unknown' otherwise). */
  readonly codeName: string;
  readonly data: unknown;
  /** The method of the failed request. */
  readonly method?: string;
}

/** The connection failed or closed; unanswered requests reject with it. */
export declare class TransportError extends Error {
  constructor(message: string, options?: { cause?: unknown });
  /** The system error code (ECONNREFUSED, ...) when there is one. */
  readonly code?: string;
}
