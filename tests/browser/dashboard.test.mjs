// SPDX-License-Identifier: MIT
// tests/browser/dashboard.test.mjs: the dashboard (GET / on the metrics
// listener) in Debian's chromium, driven by puppeteer-core. Run by
// `tools/dev browser` (which runs tests/browser/setup.sh first):
//
//   ASYNCQD=build/daemon/asyncqd ASYNCQ_BROWSER_MODULES=DIR \
//       node --test tests/browser/dashboard.test.mjs
//
// It starts asyncqd with three queues, puts jobs (some failing), and checks
// the page through the DOM contract the UI keeps (data-testid, data-field,
// data-action, body[data-ready]): the overview's numbers equal `stats`, the
// failed tab lists the failed jobs, a failed job retried from its page (with
// the confirmation) ends done, no request leaves the page's origin, no
// console error, no horizontal overflow at phone width, a dark scheme,
// keyboard reach of an action button; and with auth.token_file, the token
// form (a wrong token refused, the right one kept); without auth beyond
// loopback, the read-only banner and disabled actions. Screenshots go to
// ASYNCQ_SCREENSHOTS (default build/browser).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it as nodeIt } from 'node:test';

import { launchBrowser, poll, startDaemon } from './harness.mjs';

const SHOTS = path.resolve(process.env.ASYNCQ_SCREENSHOTS || 'build/browser');
const FAILING = 4; // jobs of queue "work" that fail until the marker exists
const PASSING = 3;
const ECHOES = 25;
const IDLE = 7; // pending in "idle" (no consumer)
const LATER = 2; // delayed in "idle"

let d; // the daemon
let browser;
let page;
let origin;
let marker;
const requests = []; // every URL the page asked for
const consoleErrors = [];

// The steps build on each other (the job retried is the one the failed tab
// listed): after a failure the later steps are skipped, saying why, so the
// first error is the one reported.
let broken = null;
function it(name, fn) {
    nodeIt(name, async (t) => {
        if (broken) {
            t.skip(`an earlier step failed: ${broken}`);
            return;
        }
        try {
            await fn(t);
        } catch (e) {
            broken = name;
            throw e;
        }
    });
}

// go(hash): navigates within the app and waits for its first render.
async function go(hash) {
    await markStale();
    await page.evaluate((h) => { location.hash = h; }, hash);
    await waitReady(hash);
}

// Before a navigation: the page shown now is no longer the one waited for.
// The hash changes at the click but the app re-routes (and resets
// data-ready) only in the hashchange event after it, so without this
// waitReady could see the old page's "1".
function markStale() {
    return page.evaluate(() => { document.body.dataset.ready = '0'; });
}

async function waitReady(what) {
    await page.waitForFunction(() => document.body && document.body.dataset.ready === '1',
        { timeout: 10000 }).catch((e) => {
        throw new Error(`page ${what}: body[data-ready="1"] never came: ${e.message}`);
    });
}

// The text of each data-field cell of a queue's overview row.
function rowCells(queue) {
    return page.evaluate((q) => {
        const row = document.querySelector(`table[data-testid=queues] tr[data-queue="${q}"]`);
        if (!row) return null;
        const out = {};
        for (const td of row.querySelectorAll('td[data-field]'))
            out[td.dataset.field] = td.textContent.trim();
        return out;
    }, queue);
}

async function shot(name) {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

// ASYNCQ_DEMO_SECONDS=N (for the screenshots in docs/): N seconds of traffic
// on queues emails and reports before the pages open, and on during the
// test, so the chart has something to draw. The checks do not look at them.
const DEMO = Number(process.env.ASYNCQ_DEMO_SECONDS || 0);
let trickle;
async function demo() {
    let n = 0;
    const tick = () => {
        const k = 2 + (n % 7);
        d.rpc.callMany('put', Array.from({ length: k }, (_, i) => ({
            queue: 'emails', name: 'welcome', args: { to: `user${n}-${i}@example.com` },
        }))).catch(() => {});
        d.rpc.call('put', {
            queue: 'reports', name: `report-${n}`,
            args: { argv: ['sh', '-c', n % 5 === 0 ? 'echo disk full >&2; exit 2' : 'echo ok'] },
        }).catch(() => {});
        n++;
    };
    trickle = setInterval(tick, 250);
    await new Promise((r) => setTimeout(r, DEMO * 1000));
}

function expectedCells(s) {
    const e = {
        ready: String(s.size),
        delayed: String(s.delayed),
        running: String(s.running),
        unfinished: String(s.unfinished),
        failed: String(s.failed),
        consumers: String(s.consumers),
        paused: s.paused ? 'yes' : 'no',
    };
    if (s.workers !== undefined) e.workers = String(s.workers);
    return e;
}

describe('dashboard in chromium', { timeout: 100000 }, () => {
    before(async () => {
        d = await startDaemon({
            queues: {
                echo: { kind: 'echo', consumers: 1 },
                work: {
                    kind: 'exec', consumers: 2, retries: 0,
                    exec: { allow: ['*'], path: '/usr/bin:/bin' },
                },
                idle: {
                    kind: 'exec', consumers: 0, retries: 0,
                    exec: { allow: ['*'], path: '/usr/bin:/bin' },
                },
                // For ASYNCQ_DEMO_SECONDS only (empty otherwise).
                emails: { kind: 'echo', consumers: 2 },
                reports: {
                    kind: 'exec', consumers: 2, retries: 0,
                    exec: { allow: ['*'], path: '/usr/bin:/bin' },
                },
            },
        });
        marker = path.join(d.dir, 'marker');
        origin = new URL(d.base).origin;
        const r = d.rpc;
        await r.callMany('put', Array.from({ length: ECHOES },
            (_, i) => ({ queue: 'echo', args: { n: i, msg: `hello ${i}` } })));
        // Fails now; succeeds once the marker file exists (the retry).
        await r.callMany('put', Array.from({ length: FAILING }, (_, i) => ({
            queue: 'work', name: `flaky-${i}`,
            args: { argv: ['sh', '-c', `echo try ${i}; echo no marker >&2; test -e ${marker}`] },
        })));
        await r.callMany('put', Array.from({ length: PASSING }, (_, i) => ({
            queue: 'work', name: `ok-${i}`, args: { argv: ['echo', `ok ${i}`] },
        })));
        await r.callMany('put', Array.from({ length: IDLE }, (_, i) => ({
            queue: 'idle', name: `report-${i}`, args: { argv: ['true'] },
        })));
        await r.callMany('put', Array.from({ length: LATER }, () => ({
            queue: 'idle', name: 'later', delay: 3600, args: { argv: ['true'] },
        })));
        await r.call('join', { queue: 'echo', timeout: 20 });
        await r.call('join', { queue: 'work', timeout: 20 });

        if (DEMO > 0) await demo();

        browser = await launchBrowser();
        page = await browser.newPage();
        await page.setViewport({ width: 1280, height: 800 });
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
        page.on('request', (req) => requests.push(req.url()));
        page.on('console', (msg) => {
            if (msg.type() === 'error') consoleErrors.push(msg.text());
        });
        page.on('pageerror', (err) => consoleErrors.push(`pageerror: ${err.message}`));
        page.on('dialog', (dlg) => {
            consoleErrors.push(`unexpected native dialog: ${dlg.message()}`);
            dlg.dismiss();
        });
    });

    after(async () => {
        clearInterval(trickle);
        if (browser) await browser.close();
        if (d) {
            const st = await d.stop();
            assert.equal(st.code, 0, `asyncqd exit ${JSON.stringify(st)}`);
        }
    });

    it('overview numbers match stats', async () => {
        await page.goto(`${d.base}/`, { waitUntil: 'load' });
        await waitReady('#/');
        await page.waitForSelector('table[data-testid=queues]', { timeout: 5000 });
        assert.ok(await page.$('[data-testid=chart]'), 'no [data-testid=chart]');
        const stats = await d.rpc.call('stats');
        // Nothing runs now (echo and work joined, idle has no consumer), so
        // stats stays as read; the page refreshes every second: poll until
        // it shows them, and say what differs if it never does.
        for (const q of ['echo', 'work', 'idle']) {
            const want = expectedCells(stats.queues[q]);
            let got;
            await poll(`overview row ${q} to show ${JSON.stringify(want)}`, async () => {
                got = await rowCells(q);
                return got && Object.keys(want).every((k) => got[k] === want[k]);
            }, 5000).catch((e) => {
                throw new Error(`${e.message}; page shows ${JSON.stringify(got)}`);
            });
            assert.ok(got.oldest !== undefined, `row ${q} has no oldest cell`);
        }
        // The numbers the test made, so a stats regression cannot hide.
        assert.equal((await rowCells('work')).failed, String(FAILING));
        assert.equal((await rowCells('idle')).ready, String(IDLE));
        assert.equal((await rowCells('idle')).delayed, String(LATER));
        await shot('overview');
    });

    it('dark mode changes the background', async () => {
        const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
        const dark = await poll('a dark background', async () => {
            const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
            return bg !== light && bg;
        }, 3000);
        await shot('overview-dark');
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
        assert.notEqual(dark, light);
    });

    it('queue page: the failed tab lists the failed jobs', async () => {
        const link = await page.$('tr[data-queue="work"] a[data-testid=queue-link]');
        assert.ok(link, 'no queue-link in row work');
        await markStale();
        await Promise.all([waitReady('#/queue/work'), link.click()]);
        assert.match(await page.evaluate(() => location.hash), /^#\/queue\/work/);
        const tab = await page.waitForSelector('[data-testid=tab-failed]', { timeout: 5000 });
        assert.equal(await tab.evaluate((el) => el.dataset.count), String(FAILING));
        assert.equal(await page.$eval('[data-testid=tab-done]', (el) => el.dataset.count),
            String(PASSING));
        await markStale();
        await tab.click();
        await waitReady('failed tab');
        const failed = await d.rpc.call('list', { queue: 'work', state: 'failed' });
        const want = failed.jobs.map((j) => String(j.job)).sort();
        await poll('the failed tab to list the failed jobs', async () => {
            const rows = await page.$$eval('tr[data-job]', (trs) => trs.map((tr) => tr.dataset.job));
            return JSON.stringify(rows.sort()) === JSON.stringify(want);
        }, 5000);
        for (const a of ['pause', 'scale', 'retry-failed', 'delete-failed', 'cancel-pending'])
            assert.ok(await page.$(`button[data-action=${a}]`), `no button[data-action=${a}]`);
        await shot('queue-failed');
    });

    it('keyboard: Tab reaches an action button', async () => {
        await page.evaluate(() => document.activeElement && document.activeElement.blur());
        let reached = null;
        for (let i = 0; i < 80 && !reached; i++) {
            await page.keyboard.press('Tab');
            reached = await page.evaluate(() => {
                const el = document.activeElement;
                return el && el.matches('button[data-action]') ? el.dataset.action : null;
            });
        }
        assert.ok(reached, '80 Tab presses never focused a button[data-action]');
    });

    it('job page: retry a failed job, confirm, it ends done', async () => {
        const failed = await d.rpc.call('list', { queue: 'work', state: 'failed' });
        const id = failed.jobs[0].job;
        const link = await page.$(`tr[data-job="${id}"] a[data-testid=job-link]`);
        assert.ok(link, `no job-link in row ${id}`);
        await markStale();
        await Promise.all([waitReady(`#/job/${id}`), link.click()]);
        assert.equal(await page.evaluate(() => location.hash), `#/job/${id}`);
        const state = () => page.$eval('[data-testid=job-state]', (el) => el.textContent.trim());
        assert.equal(await state(), 'failed');
        for (const f of ['job-args', 'job-error', 'job-stdout', 'job-stderr', 'timeline'])
            assert.ok(await page.$(`[data-testid=${f}]`), `no [data-testid=${f}]`);
        assert.match(await page.$eval('[data-testid=job-stderr]', (el) => el.textContent),
            /no marker/);
        assert.match(await page.$eval('[data-testid=job-error]', (el) => el.textContent),
            /exit|status/);
        await shot('job-failed');

        fs.writeFileSync(marker, '');
        // The confirmation first: cancel leaves the job failed.
        await page.click('button[data-action=retry]');
        await page.waitForSelector('dialog[data-testid=confirm][open]', { timeout: 5000 });
        await page.click('dialog[data-testid=confirm] button[data-testid=confirm-cancel]');
        await poll('the dialog to close', () => page.$eval('dialog[data-testid=confirm]',
            (el) => !el.open), 3000);
        assert.equal((await d.rpc.call('status', { job: id })).state, 'failed');

        await page.click('button[data-action=retry]');
        await page.waitForSelector('dialog[data-testid=confirm][open]', { timeout: 5000 });
        await page.click('dialog[data-testid=confirm] button[data-testid=confirm-ok]');
        await poll(`job ${id} to show done`, async () => (await state()) === 'done', 15000);
        const rec = await d.rpc.call('status', { job: id });
        assert.equal(rec.state, 'done');
        assert.equal(rec.retried, 1);
        await shot('job');
    });

    it('phone width: no horizontal overflow', async () => {
        await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
        for (const hash of ['#/', '#/queue/work?state=failed',
            `#/job/${(await d.rpc.call('list', { queue: 'work', state: 'done' })).jobs[0].job}`]) {
            await go(hash);
            const m = await page.evaluate(() => ({
                scroll: document.documentElement.scrollWidth,
                client: document.documentElement.clientWidth,
            }));
            assert.ok(m.scroll <= m.client,
                `${hash}: page is ${m.scroll} px wide in a ${m.client} px viewport`);
            if (hash === '#/') await shot('overview-phone');
        }
        await page.setViewport({ width: 1280, height: 800 });
    });

    it('no request to another origin, no console error', async () => {
        const foreign = requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:'));
        assert.deepEqual(foreign, [], 'requests left the page origin');
        assert.ok(requests.some((u) => u.endsWith('/rpc')), 'the page never called /rpc');
        assert.deepEqual(consoleErrors, []);
    });
});

// With auth.token_file: the page asks for the token (a wrong one is
// refused), keeps the right one in sessionStorage, and then shows the queues.
describe('dashboard with auth', { timeout: 60000 }, () => {
    const TOKEN = 'browser-test-token-1b7e';
    let tokenDir;
    let ad;
    let b;
    let p;
    const errors = [];

    before(async () => {
        broken = null;
        tokenDir = fs.mkdtempSync(path.join(os.tmpdir(), 'asyncq-token-'));
        fs.writeFileSync(path.join(tokenDir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
        ad = await startDaemon({
            auth: { token_file: path.join(tokenDir, 'token') },
            queues: { mail: { kind: 'echo', consumers: 0 } },
        });
        await ad.rpc.call('auth', { token: TOKEN });
        await ad.rpc.callMany('put', [1, 2, 3].map((i) => ({ queue: 'mail', args: { i } })));
        b = await launchBrowser();
        p = await b.newPage();
        await p.setViewport({ width: 1280, height: 800 });
        p.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
        p.on('console', (msg) => {
            // The refused token's 401 is logged by chromium as a failed load.
            if (msg.type() === 'error' && !/401/.test(msg.text())) errors.push(msg.text());
        });
    });

    after(async () => {
        if (b) await b.close();
        if (ad) {
            const st = await ad.stop();
            assert.equal(st.code, 0, `asyncqd exit ${JSON.stringify(st)}`);
        }
        fs.rmSync(tokenDir, { recursive: true, force: true });
    });

    const ready = () => p.waitForFunction(() => document.body.dataset.ready === '1', { timeout: 10000 });

    it('asks for the token, refuses a wrong one, keeps the right one', async () => {
        await p.goto(`${ad.base}/`, { waitUntil: 'load' });
        await ready();
        await p.waitForSelector('form[data-testid=token-form] input[name=token]', { timeout: 5000 });
        assert.equal(await p.$('table[data-testid=queues]'), null, 'queues shown without a token');

        await p.type('form[data-testid=token-form] input[name=token]', 'wrong-token');
        await p.keyboard.press('Enter');
        await poll('the form to say the token was refused', () => p.evaluate(() => {
            const f = document.querySelector('form[data-testid=token-form]');
            return f && /refused/i.test(f.textContent);
        }), 5000);
        assert.equal(await p.evaluate(() => sessionStorage.getItem('asyncq.token')), null);

        await p.type('form[data-testid=token-form] input[name=token]', TOKEN);
        await p.keyboard.press('Enter');
        await p.waitForSelector('table[data-testid=queues] tr[data-queue="mail"]', { timeout: 5000 });
        await poll('the mail row to show 3 ready', () => p.$eval(
            'tr[data-queue="mail"] td[data-field=ready]', (td) => td.textContent.trim() === '3'), 5000);
        assert.equal(await p.evaluate(() => sessionStorage.getItem('asyncq.token')), TOKEN);
        assert.ok(await p.$eval('[data-testid=readonly]', (el) => el.hidden),
            'read-only banner shown with a valid token on loopback');
        assert.deepEqual(errors, []);
    });
});

// Without auth on a listener beyond loopback: read-only, said by a banner,
// every action button disabled (and /rpc refuses the change anyway).
describe('dashboard read-only beyond loopback', { timeout: 60000 }, () => {
    let rd;
    let b;
    let p;

    before(async () => {
        broken = null;
        rd = await startDaemon({
            queues: { jobs: { kind: 'echo', consumers: 0 } },
        }, { metricsHost: '0.0.0.0' });
        await rd.rpc.call('put', { queue: 'jobs', args: { x: 1 } });
        b = await launchBrowser();
        p = await b.newPage();
        await p.setViewport({ width: 1280, height: 800 });
    });

    after(async () => {
        if (b) await b.close();
        if (rd) {
            const st = await rd.stop();
            assert.equal(st.code, 0, `asyncqd exit ${JSON.stringify(st)}`);
        }
    });

    it('shows the read-only banner and disables the actions', async () => {
        await p.goto(`${rd.base}/#/queue/jobs`, { waitUntil: 'load' });
        await p.waitForFunction(() => document.body.dataset.ready === '1', { timeout: 10000 });
        await p.waitForSelector('button[data-action=pause]', { timeout: 5000 });
        assert.equal(await p.$eval('[data-testid=readonly]', (el) => el.hidden), false,
            'no read-only banner');
        const enabled = await p.$$eval('button[data-action]',
            (bs) => bs.filter((x) => !x.disabled).map((x) => x.dataset.action));
        assert.deepEqual(enabled, [], 'action buttons enabled on a read-only page');
    });
});
