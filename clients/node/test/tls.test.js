// SPDX-License-Identifier: MIT
// tls:// listeners, with and without client certificates (tests/tls/).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { TransportError, connect } from '../index.js';
import { TLS_DIR, startDaemon } from './daemon.js';

const T = { timeout: 30000 };
const f = (name) => join(TLS_DIR, name);

/** Connects and pings: with TLS 1.3 a refused client certificate shows at the first read. */
async function pingOver(url, opts) {
  const c = await connect(url, { timeout: 5, ...opts });
  try {
    return await c.ping();
  } finally {
    await c.close();
  }
}

describe('tls', T, () => {
  let d;
  before(async () => {
    d = await startDaemon({
      tls: { cert: f('server.pem'), key: f('server.key'), client_ca: null },
      queues: { default: { kind: 'echo' } },
    }, { tls: true });
  });
  after(async () => { await d?.stop(); });

  test('the server is verified with the CA (file path or PEM)', async () => {
    assert.equal(await pingOver(d.url, { ca: f('ca.pem') }), 'pong');
    assert.equal(await pingOver(d.url.replace('127.0.0.1', 'localhost'), { ca: readFileSync(f('ca.pem')) }), 'pong');
    process.env.ASYNCQ_CA = f('ca.pem');
    try {
      assert.equal(await pingOver(d.url), 'pong');
    } finally {
      delete process.env.ASYNCQ_CA;
    }
  });

  test('a server the CA did not sign is refused', async () => {
    await assert.rejects(pingOver(d.url, { ca: f('other-ca.pem') }), TransportError);
    await assert.rejects(pingOver(d.url), TransportError); // system CAs
  });

  test('put and wait over TLS', async () => {
    const c = await connect(d.url, { ca: f('ca.pem') });
    const rs = await c.putMany(Array.from({ length: 100 }, (_, i) => ({ args: { i } })));
    const recs = await c.wait(rs.map((r) => r.job), { timeout: 10 });
    assert.deepEqual(recs.map((r) => r.result.i), [...Array(100).keys()]);
    await c.close();
  });
});

describe('mutual tls', T, () => {
  let d;
  before(async () => {
    d = await startDaemon({
      tls: { cert: f('server.pem'), key: f('server.key'), client_ca: f('ca.pem') },
      queues: { default: { kind: 'echo' } },
    }, { tls: true });
  });
  after(async () => { await d?.stop(); });

  test('a client certificate signed by client_ca is accepted', async () => {
    assert.equal(await pingOver(d.url, { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key') }), 'pong');
  });

  test('no client certificate, or one from another CA, is refused', async () => {
    await assert.rejects(pingOver(d.url, { ca: f('ca.pem') }), TransportError);
    await assert.rejects(pingOver(d.url, {
      ca: f('ca.pem'), cert: f('other-client.pem'), key: f('other-client.key'),
    }), TransportError);
  });
});
