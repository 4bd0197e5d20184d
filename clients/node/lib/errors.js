// SPDX-License-Identifier: MIT
// Errors: AsyncqError for an error the daemon answered (a JSON-RPC error
// object), TransportError for everything that happens to the connection.

/**
 * The daemon's error codes (SPEC §1), by name.
 * @readonly
 * @enum {number}
 */
export const ErrorCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  QUEUE_FULL: -32000,
  UNAUTHORIZED: -32001,
  NO_SUCH_QUEUE: -32002,
  NO_SUCH_JOB: -32004,
  NOT_ALLOWED: -32005,
  TIMEOUT: -32008,
  JOB_FINISHED: -32009,
  SHUTTING_DOWN: -32010,
  TOO_MANY_CONNECTIONS: -32011,
  JOB_NOT_FINISHED: -32012,
  NOT_YOUR_LEASE: -32014,
});

const NAMES = new Map(
  Object.entries(ErrorCode).map(([k, v]) => [v, k.toLowerCase()]));

/**
 * An error answered by the daemon. `code` is the JSON-RPC error code
 * (compare it with {@link ErrorCode}), `codeName` its name in lower case
 * ("no_such_job"), `data` the error's data member if any.
 */
export class AsyncqError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   * @param {unknown} [data]
   * @param {string} [method] the method of the request that failed
   */
  constructor(code, message, data, method) {
    super(method ? `${method}: ${message}` : message);
    this.name = 'AsyncqError';
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.codeName = NAMES.get(code) ?? 'unknown';
    /** @type {unknown} */
    this.data = data;
    /** @type {string | undefined} */
    this.method = method;
  }
}

/**
 * The connection failed: it could not be made, the TLS handshake failed,
 * it was closed (by either side), or the daemon sent something that is not
 * the protocol. Requests still unanswered reject with it.
 */
export class TransportError extends Error {
  /**
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(message, options) {
    super(message, options);
    this.name = 'TransportError';
    if (options && options.cause && typeof options.cause === 'object' &&
        'code' in options.cause)
      /** @type {string | undefined} */
      this.code = /** @type {any} */ (options.cause).code;
  }
}
