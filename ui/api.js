// ui/api.js: JSON-RPC 2.0 over POST /rpc (docs/protocol.md), the token
// kept for the tab, and the errors the pages tell apart.

const TOKEN_KEY = "asyncq.token";
let nextId = 1;

// A JSON-RPC error reply: code and message as the daemon sent them.
export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data;
  }
}

// HTTP 401 (or -32001): the token is missing or wrong.
export class AuthError extends Error {}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (a private window): the token lives until reload.
  }
}

async function post(body) {
  const headers = { "Content-Type": "application/json", "X-Asyncq": "1" };
  const token = getToken();
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch("/rpc", {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    cache: "no-store",
    credentials: "same-origin",
    referrerPolicy: "no-referrer",
  });
  if (res.status === 401) throw new AuthError("unauthorized");
  if (!res.ok) throw new Error(`/rpc: HTTP ${res.status}`);
  return res.json();
}

function outcome(msg) {
  if (msg && msg.error) {
    if (msg.error.code === -32001) return new AuthError(msg.error.message);
    return new RpcError(msg.error.code, msg.error.message, msg.error.data);
  }
  return msg.result;
}

// Calls method with params (an object, or undefined for none); resolves
// to its result, rejects with RpcError, AuthError or a transport Error.
export async function rpc(method, params) {
  const req = { jsonrpc: "2.0", id: nextId++, method };
  if (params !== undefined) req.params = params;
  const r = outcome(await post(req));
  if (r instanceof Error) throw r;
  return r;
}

// Several calls in one request (a JSON-RPC batch): calls is a list of
// [method, params]; resolves to a list, in the same order, of results or
// RpcError objects (returned, not thrown, so one failure spoils nothing).
export async function batch(calls) {
  const reqs = calls.map(([method, params]) => {
    const req = { jsonrpc: "2.0", id: nextId++, method };
    if (params !== undefined) req.params = params;
    return req;
  });
  const replies = await post(reqs);
  if (!Array.isArray(replies)) {
    // A whole-batch error (-32600 ...): every call gets it.
    const e = outcome(replies);
    if (e instanceof AuthError) throw e;
    return reqs.map(() => e);
  }
  const byId = new Map(replies.map((m) => [m.id, m]));
  return reqs.map((req) => {
    const m = byId.get(req.id);
    if (!m) return new RpcError(-32603, "no reply in the batch");
    const r = outcome(m);
    if (r instanceof AuthError) throw r;
    return r;
  });
}
