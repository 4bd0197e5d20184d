// SPDX-License-Identifier: MIT
/**
 * asyncq: the Node.js client of the asyncq job-queue daemon.
 * @module asyncq
 */
export { Client, connect, parseUrl, DEFAULT_SERVER } from './lib/client.js';
export { Worker, errorOf } from './lib/worker.js';
export { AsyncqError, TransportError, ErrorCode } from './lib/errors.js';
