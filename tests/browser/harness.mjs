// SPDX-License-Identifier: MIT
// tests/browser/harness.mjs: what the browser test and bench/dashboard share:
// start asyncqd on a config in a temp dir, talk JSON-RPC to it over its
// socket, and launch Debian's chromium through puppeteer-core (installed by
// tests/browser/setup.sh into ASYNCQ_BROWSER_MODULES). Every wait has a
// deadline; nothing sleeps as synchronisation.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// poll(what, fn, ms): calls fn until it returns a truthy value, every 50 ms,
// and throws naming `what` past the deadline.
export async function poll(what, fn, ms = 10000) {
    const end = Date.now() + ms;
    let last;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) {
            last = e;
        }
        if (Date.now() > end)
            throw new Error(`timed out after ${ms} ms waiting for ${what}` +
                (last ? `: ${last.message}` : ''));
        await new Promise((r) => setTimeout(r, 50));
    }
}

// A TCP port nobody listens on now (the kernel's choice).
export async function freePort() {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address();
    srv.close();
    await once(srv, 'close');
    return port;
}

// A JSON-RPC connection over a Unix or TCP socket: call(method, params)
// resolves with the result or rejects with the error (code in e.code).
export class Rpc {
    static async connect(address) {
        const sock = net.connect(address);
        await once(sock, 'connect');
        return new Rpc(sock);
    }

    constructor(sock) {
        this.sock = sock;
        this.next = 1;
        this.waiting = new Map();
        let buf = '';
        sock.setEncoding('utf8');
        sock.on('data', (chunk) => {
            buf += chunk;
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 1);
                if (!line.trim()) continue;
                const msg = JSON.parse(line);
                const w = this.waiting.get(msg.id);
                if (!w) continue;
                this.waiting.delete(msg.id);
                if (msg.error) {
                    const e = new Error(`${msg.error.code}: ${msg.error.message}`);
                    e.code = msg.error.code;
                    w.reject(e);
                } else {
                    w.resolve(msg.result);
                }
            }
        });
        const fail = (e) => {
            for (const w of this.waiting.values())
                w.reject(e || new Error('connection closed'));
            this.waiting.clear();
        };
        sock.on('error', fail);
        sock.on('close', () => fail());
    }

    call(method, params = {}) {
        const id = this.next++;
        return new Promise((resolve, reject) => {
            this.waiting.set(id, { resolve, reject });
            this.sock.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
        });
    }

    // Many requests in one write (pipelined), resolved in order.
    callMany(method, paramsList) {
        const ps = [];
        let out = '';
        for (const params of paramsList) {
            const id = this.next++;
            ps.push(new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject })));
            out += JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n';
        }
        this.sock.write(out);
        return Promise.all(ps);
    }

    close() {
        this.sock.end();
        this.sock.destroy();
    }
}

// Starts asyncqd (env ASYNCQD, default build/daemon/asyncqd) in a new temp
// dir on `config` (listen and metrics filled in: a Unix socket in the dir and
// 127.0.0.1 on a free port). Returns {dir, sock, base (http://host:port),
// pid, rpc, stop(), log()}.
// `metricsHost` binds the metrics listener elsewhere (e.g. 0.0.0.0); the
// page is still reached on 127.0.0.1.
export async function startDaemon(config, { metricsHost = '127.0.0.1' } = {}) {
    const bin = path.resolve(process.env.ASYNCQD || 'build/daemon/asyncqd');
    if (!fs.existsSync(bin)) throw new Error(`asyncqd: ${bin}: not built (set ASYNCQD)`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asyncq-browser-'));
    const sock = path.join(dir, 'aq.sock');
    const port = await freePort();
    const cfg = {
        listen: [`unix:${sock}`],
        metrics: `${metricsHost}:${port}`,
        journal: { path: null },
        log: { level: 'info' },
        ...config,
    };
    fs.writeFileSync(path.join(dir, 'asyncqd.json'), JSON.stringify(cfg, null, 1));
    const logPath = path.join(dir, 'asyncqd.log');
    const logFd = fs.openSync(logPath, 'w');
    const child = spawn(bin, ['--config', path.join(dir, 'asyncqd.json')], {
        cwd: dir,
        stdio: ['ignore', logFd, logFd],
    });
    fs.closeSync(logFd);
    let exited = null;
    child.on('exit', (code, sig) => { exited = { code, sig }; });
    const log = () => fs.readFileSync(logPath, 'utf8');
    const base = `http://127.0.0.1:${port}`;
    try {
        await poll('asyncqd to answer /healthz', async () => {
            if (exited) throw new Error(`asyncqd exited (${JSON.stringify(exited)}):\n${log()}`);
            const r = await fetch(`${base}/healthz`);
            return r.status === 200;
        }, 15000);
    } catch (e) {
        child.kill('SIGKILL');
        throw e;
    }
    const rpc = await Rpc.connect(sock);
    async function stop() {
        rpc.close();
        if (exited) return exited;
        child.kill('SIGTERM');
        try {
            await poll('asyncqd to stop after SIGTERM', () => exited, 20000);
        } catch (e) {
            child.kill('SIGKILL');
            throw e;
        }
        fs.rmSync(dir, { recursive: true, force: true });
        return exited;
    }
    return { dir, sock, base, pid: child.pid, rpc, stop, log, exited: () => exited };
}

// puppeteer-core from the directory tests/browser/setup.sh printed.
export async function loadPuppeteer() {
    const dir = process.env.ASYNCQ_BROWSER_MODULES;
    if (!dir) throw new Error('ASYNCQ_BROWSER_MODULES is not set: run tests/browser/setup.sh (tools/dev browser does)');
    const require = createRequire(path.join(dir, 'package.json'));
    const mod = await import(pathToFileURL(require.resolve('puppeteer-core')).href);
    return mod.default || mod;
}

export async function launchBrowser() {
    const puppeteer = await loadPuppeteer();
    const args = ['--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
        '--no-default-browser-check', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--metrics-recording-only',
        '--disable-features=Translate,OptimizationHints,MediaRouter'];
    // chromium's sandbox refuses to run as root.
    if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
    return puppeteer.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true, // the new headless mode (--headless=new)
        args,
        protocolTimeout: 30000,
    });
}

// Reads /proc/PID/stat: utime + stime in clock ticks (100 a second on
// Linux, as `getconf CLK_TCK` says on every platform we run).
export function cpuTicks(pid) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    return Number(fields[11]) + Number(fields[12]);
}
