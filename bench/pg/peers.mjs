// SPDX-License-Identifier: MIT
// bench/pg/peers.mjs: graphile-worker and pg-boss on the PostgreSQL that
// bench/pg/run starts, the load bench/pg/run compares asyncq with (issue 17).
// Run from bench/pg (node_modules next to it), never by hand in production.
//
//   node peers.mjs CONNINFO graphile|pgboss e2e N
//       4 producers put N 100-byte echo jobs in bulk as each system's docs
//       recommend (graphile-worker: WorkerUtils.addJobs, one transaction per
//       chunk of 100; pg-boss: insert() of 100), while 2 worker processes
//       complete them. Clock: first put to the last job completed in the
//       database (graphile-worker: its row deleted; pg-boss: state
//       'completed'), polled every 2 ms once the workers have run all N.
//   node peers.mjs CONNINFO graphile|pgboss latency N RATE
//       one producer offers RATE single puts/s (addJob / send), at most 256
//       in flight, N jobs; the 2 worker processes note put -> handler end (monotonic
//       clock, shared by the processes of one machine). The peers' figure
//       stops before their completion is written, so it flatters them.
//
// Prints one JSON line: {"system","mode","jobs","seconds","jobs_per_s",
// "puts_per_s" (the rate the puts were accepted at),"p50_us","p99_us" (put
// -> done), "ack_p50_us","ack_p99_us" (put call -> resolved: committed)}. Each run starts from an empty schema (dropped first).
// Worker settings (documented in bench/RESULTS.md):
//   graphile-worker: concurrency 16, localQueue.size 64,
//                    completeJobBatchDelay 0 (docs' "performance" page)
//   pg-boss:         useListenNotify + queue notify, batchSize 64,
//                    burstWhenBatchFull, localConcurrency 2
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const [conninfo, system, mode, nArg, rateArg, role] = process.argv.slice(2);
const N = Number(nArg), RATE = Number(rateArg || 0);
const QUEUE = 'echo', PRODUCERS = 4, CHUNK = 100, WORKERS = 2, WINDOW = 256;
const payload = { p: 'x'.repeat(100) };
const now = () => process.hrtime.bigint(); // CLOCK_MONOTONIC: shared across processes

function die(msg) {
    console.error(`peers.mjs: ${msg}`);
    process.exit(1);
}

// ---- graphile-worker ----
async function gwWorker(onDone) {
    const { run } = await import('graphile-worker');
    const runner = await run({
        connectionString: conninfo,
        concurrency: 16,
        noHandleSignals: true,
        pollInterval: 2000,
        logger: quietLogger(await import('graphile-worker')),
        taskList: {
            echo: async (p) => { onDone(p); return p; },
        },
        preset: { worker: { localQueue: { size: 64 }, completeJobBatchDelay: 0 } },
    });
    return () => runner.stop();
}
function quietLogger(gw) {
    return new gw.Logger(() => (level, message) => {
        if (level === 'error') console.error(`graphile-worker: ${message}`);
    });
}
async function gwProducer() {
    const gw = await import('graphile-worker');
    const utils = await gw.makeWorkerUtils({ connectionString: conninfo, logger: quietLogger(gw) });
    await utils.migrate();
    return {
        bulk: (n) => utils.addJobs(Array.from({ length: n }, () =>
            ({ identifier: QUEUE, payload }))),
        one: (t) => utils.addJob(QUEUE, { ...payload, t: String(t) }),
        close: () => utils.release(),
        remaining: "SELECT count(*)::int AS n FROM graphile_worker.jobs",
    };
}
async function gwReset(client) {
    await client.query('DROP SCHEMA IF EXISTS graphile_worker CASCADE');
}

// ---- pg-boss ----
async function bossOpen() {
    const { PgBoss } = await import('pg-boss');
    const boss = new PgBoss({ connectionString: conninfo, useListenNotify: true,
                              supervise: false, schedule: false });
    boss.on('error', (e) => console.error(`pg-boss: ${e.message}`));
    await boss.start();
    return boss;
}
async function bossWorker(onDone) {
    const boss = await bossOpen();
    await boss.work(QUEUE, { batchSize: 64, burstWhenBatchFull: true, localConcurrency: 2,
                             pollingIntervalSeconds: 0.5 },
                    async (jobs) => { for (const j of jobs) onDone(j.data); });
    return () => boss.stop({ graceful: true, wait: true });
}
async function bossProducer() {
    const boss = await bossOpen();
    await boss.createQueue(QUEUE, { notify: true });
    return {
        bulk: (n) => boss.insert(QUEUE, Array.from({ length: n }, () => ({ data: payload }))),
        one: (t) => boss.send(QUEUE, { ...payload, t: String(t) }),
        close: () => boss.stop({ graceful: false, wait: true }),
        remaining: `SELECT count(*)::int AS n FROM pgboss.job WHERE name = '${QUEUE}' AND state <> 'completed'`,
    };
}
async function bossReset(client) {
    await client.query('DROP SCHEMA IF EXISTS pgboss CASCADE');
}

const SYS = {
    graphile: { worker: gwWorker, producer: gwProducer, reset: gwReset },
    pgboss: { worker: bossWorker, producer: bossProducer, reset: bossReset },
}[system] || die(`unknown system ${system} (graphile or pgboss)`);

// ---- a worker process: counts completions, keeps latencies ----
if (role === 'worker') {
    let done = 0, reported = 0;
    const lat = [];
    const stop = await SYS.worker((p) => {
        if (p && p.t) lat.push(Number(now() - BigInt(p.t)) / 1000);
        done++;
    });
    const tick = setInterval(() => {
        if (done !== reported) { process.send({ done: done - reported }); reported = done; }
    }, 2);
    process.on('message', async (m) => {
        if (m !== 'stop') return;
        clearInterval(tick);
        await stop();
        process.send({ done: done - reported, lat }, () => process.exit(0));
    });
    process.on('disconnect', () => process.exit(1)); // the parent is gone
    process.send({ ready: true });
} else {
    await main();
}

async function main() {
    if (!['e2e', 'latency'].includes(mode) || !(N > 0) || (mode === 'latency' && !(RATE > 0)))
        die('usage: peers.mjs CONNINFO graphile|pgboss e2e N | latency N RATE');
    const db = new pg.Client({ connectionString: conninfo });
    await db.connect();
    await SYS.reset(db);
    const prod = await SYS.producer(); // creates the schema before the workers start
    let done = 0, wake = null;
    const lat = [], ack = [];
    const workers = [];
    for (let i = 0; i < WORKERS; i++) {
        const w = fork(fileURLToPath(import.meta.url),
                       [conninfo, system, mode, nArg, rateArg || '0', 'worker']);
        w.on('exit', (code) => { if (code) die(`worker exited with ${code}`); });
        await new Promise((resolve) => w.on('message', function first(m) {
            if (m.ready) { w.off('message', first); resolve(); }
        }));
        w.on('message', (m) => {
            done += m.done || 0;
            if (m.lat) lat.push(...m.lat);
            if (wake) wake();
        });
        workers.push(w);
    }
    const t0 = now();
    if (mode === 'e2e') {
        await Promise.all(Array.from({ length: PRODUCERS }, async (_, i) => {
            const share = Math.floor(N / PRODUCERS) + (i < N % PRODUCERS ? 1 : 0);
            for (let sent = 0; sent < share; sent += CHUNK)
                await prod.bulk(Math.min(CHUNK, share - sent));
        }));
    } else {
        // At most WINDOW puts in flight, as asyncq-bench -P 256: a system
        // that cannot take RATE falls behind (puts_per_s says so) rather
        // than queueing without bound in its connection pool.
        const inflight = new Set();
        for (let sent = 0; sent < N;) {
            const due = Math.min(N, Math.floor(Number(now() - t0) / 1e9 * RATE) + 1);
            while (sent < due && inflight.size < WINDOW) {
                const t = now();
                const p = prod.one(t).then(() => ack.push(Number(now() - t) / 1000))
                    .finally(() => inflight.delete(p));
                inflight.add(p);
                sent++;
            }
            await new Promise((r) => setTimeout(r, 1));
        }
        await Promise.all(inflight);
    }
    const putSeconds = Number(now() - t0) / 1e9;
    const deadline = Date.now() + 120000;
    while (done < N) {
        if (Date.now() > deadline) die(`only ${done} of ${N} jobs done after 120 s`);
        await new Promise((r) => { wake = r; setTimeout(r, 50); });
    }
    // The workers ran every job: now until every completion is in the table.
    while ((await db.query(prod.remaining)).rows[0].n > 0) {
        if (Date.now() > deadline) die('completions not written after 120 s');
        await new Promise((r) => setTimeout(r, 2));
    }
    const seconds = Number(now() - t0) / 1e9;
    for (const w of workers) w.send('stop');
    await Promise.all(workers.map((w) => new Promise((r) => w.on('exit', r))));
    await prod.close();
    await db.end();
    const pct = (v, q) => v.length ? v[Math.min(v.length - 1, Math.floor(q * v.length))] : 0;
    lat.sort((a, b) => a - b);
    ack.sort((a, b) => a - b);
    console.log(JSON.stringify({
        system, mode, jobs: N, seconds: Number(seconds.toFixed(3)),
        jobs_per_s: Math.round(N / seconds), puts_per_s: Math.round(N / putSeconds), p50_us: Math.round(pct(lat, 0.5)), p99_us: Math.round(pct(lat, 0.99)),
        ack_p50_us: Math.round(pct(ack, 0.5)), ack_p99_us: Math.round(pct(ack, 0.99)),
    }));
    process.exit(0);
}
