// SPDX-License-Identifier: MIT
// bench/dashboard.mjs: what an open dashboard costs asyncqd (issue 15: under
// 1% CPU with 1M-job queues at one refresh a second). Run by bench/dashboard.
//
// asyncqd gets queue "big" (echo, no consumer) filled with JOBS pending jobs
// by asyncq-bench, and queue "small" (echo, 1 consumer) with a trickle of
// done jobs so the chart has something to draw. Then asyncqd's CPU time
// (utime + stime from /proc/PID/stat) is read over SECONDS each: with no page
// open, with the overview open in headless chromium, with the big queue's
// page (pending tab) open. The pages refresh themselves every second; the
// /rpc calls they made in the window are counted.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';

import { cpuTicks, launchBrowser, poll, startDaemon } from '../tests/browser/harness.mjs';

const JOBS = Number(process.env.JOBS || 1000000);
const SECONDS = Number(process.env.SECONDS_EACH || 60);
const BENCH = process.env.ASYNCQ_BENCH || 'build/tools/asyncq-bench';
const HZ = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

const log = (...a) => console.error('dashboard:', ...a);

async function measure(d, what, page) {
    let calls = 0;
    const count = (req) => { if (req.url().endsWith('/rpc')) calls++; };
    if (page) page.on('request', count);
    const t0 = process.hrtime.bigint();
    const c0 = cpuTicks(d.pid);
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const c1 = cpuTicks(d.pid);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    if (page) page.off('request', count);
    const cpu = ((c1 - c0) / HZ / secs) * 100;
    const row = { what, seconds: +secs.toFixed(1), cpu_ticks: c1 - c0, cpu_percent: +cpu.toFixed(2), rpc_calls: calls };
    log(JSON.stringify(row));
    return row;
}

const d = await startDaemon({
    log: { level: 'warn' },
    queues: {
        big: { kind: 'echo', consumers: 0, maxsize: 0 },
        small: { kind: 'echo', consumers: 1 },
    },
});
let browser;
try {
    log(`filling queue big with ${JOBS} jobs`);
    const t0 = Date.now();
    const fill = spawn(BENCH, ['-s', `unix:${d.sock}`, '-q', 'big', '-k', 'echo', '-n', String(JOBS),
        '-c', '4', '--no-join', '-a', '{"n":1,"note":"a 1M-job queue"}'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const [code] = await once(fill, 'exit');
    if (code !== 0) throw new Error(`asyncq-bench exited ${code}`);
    const st = await d.rpc.call('stats', { queue: 'big' });
    if (st.queues.big.size !== JOBS) throw new Error(`queue big holds ${st.queues.big.size}, not ${JOBS}`);
    log(`filled in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // A trickle of done jobs on "small": 20 a second, for the chart.
    const trickle = setInterval(() => {
        d.rpc.callMany('put', Array.from({ length: 20 }, (_, i) => ({ queue: 'small', args: { i } })))
            .catch(() => {});
    }, 1000);

    const rows = [];
    rows.push(await measure(d, 'no page open', null));
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(`${d.base}/`, { waitUntil: 'load' });
    await poll('the overview to render', () => page.evaluate(() => document.body.dataset.ready === '1'), 20000);
    rows.push(await measure(d, 'overview open', page));
    await page.evaluate(() => { location.hash = '#/queue/big'; });
    await poll('the queue page to render', () => page.evaluate(() => document.body.dataset.ready === '1'), 20000);
    rows.push(await measure(d, 'queue page (1M pending) open', page));
    clearInterval(trickle);

    const cpu = os.cpus()[0].model;
    console.log(`date: ${new Date().toISOString().slice(0, 10)}; machine: ${os.cpus().length} x ${cpu}, ` +
        `${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}; chromium: ${await browser.version()}`);
    console.log(`queue big: ${JOBS} pending jobs; ${SECONDS} s each; asyncqd CPU from /proc/PID/stat (utime+stime)`);
    console.log('');
    console.log('| page | asyncqd CPU | /rpc calls in the window |');
    console.log('|---|---|---|');
    for (const r of rows)
        console.log(`| ${r.what} | ${r.cpu_percent.toFixed(2)} % (${r.cpu_ticks} ticks in ${r.seconds} s) | ${r.rpc_calls} |`);
    if (rows.slice(1).some((r) => r.rpc_calls < SECONDS / 2))
        console.log('WARNING: a page made fewer /rpc calls than one every 2 s: is it refreshing?');
    const open = rows.slice(1).map((r) => r.cpu_percent - rows[0].cpu_percent);
    console.log('');
    console.log(`dashboard cost over idle: ${open.map((x) => x.toFixed(2) + ' %').join(', ')} (target < 1 %)`);
} finally {
    if (browser) await browser.close();
    await d.stop();
}
