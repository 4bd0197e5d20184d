// SPDX-License-Identifier: MIT
// bench/bullmq_bench.mjs: BullMQ on Redis, the load bench/remote compares
// asyncq's remote workers with. bench/remote installs the npm package
// bullmq into a scratch directory outside the repository and runs a copy of
// this file there (so that `import 'bullmq'` finds it); never from the tree.
//
//   node bullmq_bench.mjs PORT ingest N             4 producers, addBulk of 64
//   node bullmq_bench.mjs PORT e2e N CONCURRENCY    the same producers while
//                                                   one Worker runs the jobs
//
// 100-byte payloads; prints one JSON line {"mode","jobs","seconds",
// "jobs_per_s"}. Finished jobs: the last 1,000 kept (removeOnComplete), as
// asyncqd keeps results.max records.
import { Queue, Worker } from 'bullmq';

const [port, mode, nArg, concArg] = process.argv.slice(2);
const N = Number(nArg);
const connection = { host: '127.0.0.1', port: Number(port) };
const PRODUCERS = 4, CHUNK = 64, name = 'bench';
const payload = 'x'.repeat(100);

async function produce(q, share) {
    for (let sent = 0; sent < share; sent += CHUNK) {
        const n = Math.min(CHUNK, share - sent), jobs = [];
        for (let i = 0; i < n; i++)
            jobs.push({ name: 'j', data: { p: payload },
                        opts: { removeOnComplete: 1000 } });
        await q.addBulk(jobs);
    }
}

const queues = [];
for (let i = 0; i < PRODUCERS; i++) {
    queues.push(new Queue(name, { connection }));
    await queues[i].waitUntilReady();
}
let worker = null, done = 0, finished;
const allDone = new Promise((resolve) => { finished = resolve; });
if (mode === 'e2e') {
    worker = new Worker(name, async () => true,
                        { connection, concurrency: Number(concArg) });
    worker.on('completed', () => { if (++done === N) finished(); });
    await worker.waitUntilReady();
}
const t0 = process.hrtime.bigint();
await Promise.all(queues.map((q, i) =>
    produce(q, Math.floor(N / PRODUCERS) + (i < N % PRODUCERS ? 1 : 0))));
if (worker)
    await allDone;
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ mode, jobs: N, seconds: s,
                             jobs_per_s: Math.round(N / s) }));
if (worker)
    await worker.close();
await Promise.all(queues.map((q) => q.close()));
