#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// A minimal Node.js remote worker for benchmarks: takes jobs from a remote
// queue with the clients/node Worker, answers each with its args, and exits
// after --jobs of them, printing the rate.
//
//   node bench/remote_worker.mjs --server unix:/tmp/aq.sock --queue bench \
//        --concurrency 64 --jobs 100000 [--max 64] [--token T]
//
// The clock starts at the first job taken and stops at the last task_done
// answered. Output: one line, `node-worker jobs=N seconds=S jobs_per_s=R`
// (with --json: {"jobs":N,"seconds":S,"jobs_per_s":R}).

import { parseArgs } from 'node:util';

import { Worker } from '../clients/node/index.js';

const { values: o } = parseArgs({
  options: {
    server: { type: 'string', default: process.env.ASYNCQ_SERVER ?? 'tcp://127.0.0.1:7878' },
    queue: { type: 'string', default: 'bench' },
    concurrency: { type: 'string', default: '64' },
    jobs: { type: 'string', default: '10000' },
    max: { type: 'string', default: '64' },
    token: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const want = Number(o.jobs);
const concurrency = Number(o.concurrency);
if (!(want > 0) || !(concurrency > 0)) {
  console.error('remote_worker: --jobs and --concurrency must be positive integers');
  process.exit(2);
}

const worker = new Worker(o.server, {
  queues: o.queue, concurrency, maxPerGet: Number(o.max), token: o.token, grace: 5, wait: 1,
});
let taken = 0;
let ended = 0;
let t0 = 0;
let t1 = 0;
worker.handle(async (job) => {
  if (taken++ === 0) t0 = performance.now();
  return job.args;
});
// 'done' fires once the daemon has answered the task_done.
worker.on('done', () => {
  if (++ended === want) {
    t1 = performance.now();
    worker.stop();
  }
});
await worker.run();
const s = (t1 - t0) / 1000;
const rate = ended / s;
if (o.json) console.log(JSON.stringify({ jobs: ended, seconds: s, jobs_per_s: rate }));
else console.log(`node-worker jobs=${ended} seconds=${s.toFixed(3)} jobs_per_s=${rate.toFixed(0)}`);
