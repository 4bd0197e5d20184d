// ui/app.js: the entry module. Asks `session` what this tab may do,
// shows the token form when a token is needed, then routes by hash:
//   #/              the overview (ui/overview.js)
//   #/queue/NAME    a queue's jobs, ?state=STATE (ui/queue.js)
//   #/job/ID        one job (ui/job.js)
// document.body.dataset.ready is "0" while a route renders, "1" once its
// first render is on screen (the browser test waits on it).

import { rpc, AuthError, getToken, setToken } from "./api.js";
import { h } from "./dom.js";
import { mountOverview } from "./overview.js";
import { mountQueue } from "./queue.js";
import { mountJob } from "./job.js";

const main = document.getElementById("main");
let session = null;
let current = null; // the mounted page: {stop()}
let generation = 0; // bumped on every route change

function setReady(on) {
  document.body.dataset.ready = on ? "1" : "0";
}

// A short message under the header: what an action did, or an error.
function notify(message, kind = "info") {
  const b = document.getElementById("banner");
  b.textContent = message;
  b.className = `banner ${kind}`;
  b.hidden = false;
  clearTimeout(notify.timer);
  if (kind === "info") notify.timer = setTimeout(() => (b.hidden = true), 6000);
}

function applySession(s) {
  session = s;
  document.getElementById("version").textContent = s.version
    ? `v${s.version}`
    : "";
  const ro = document.getElementById("readonly");
  ro.hidden = s.writable !== false;
  if (s.writable === false)
    ro.textContent = s.auth
      ? "Read-only: this token may not change anything; actions are disabled."
      : "Read-only: the dashboard listener is not on a loopback address and " +
        "no auth token is configured, so actions are disabled.";
  document.body.classList.toggle("readonly", s.writable === false);
}

function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter((p) => p !== "");
  if (parts[0] === "queue" && parts.length === 2)
    return { page: "queue", queue: decodeURIComponent(parts[1]), state: params.get("state") };
  if (parts[0] === "job" && parts.length === 2 && /^\d+$/.test(parts[1]))
    return { page: "job", job: Number(parts[1]) };
  return { page: "overview" };
}

function showTokenForm(refused) {
  if (current) current.stop();
  current = null;
  const input = h("input", {
    type: "password",
    name: "token",
    id: "token",
    autocomplete: "current-password",
    required: true,
  });
  const err = h("p", { class: "error", role: "alert" },
    refused ? "That token was refused." : "");
  const form = h(
    "form",
    { "data-testid": "token-form", class: "token-form card" },
    h("h1", {}, "Sign in"),
    h("p", {}, "This asyncq daemon needs its auth token (auth.token_file). " +
      "It is kept for this tab only."),
    h("label", { for: "token" }, "Token"),
    input,
    err,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    await start();
  });
  main.replaceChildren(form);
  input.focus();
  setReady(true);
}

// An AuthError anywhere: the token stopped working (or never did).
function authFailed() {
  setToken(null);
  start(true);
}

function route() {
  if (!session) return;
  const gen = ++generation;
  if (current) current.stop();
  current = null;
  setReady(false);
  main.replaceChildren();
  const r = parseRoute();
  const ctx = {
    session,
    writable: session.writable !== false,
    notify,
    authFailed,
    // Pages call it after their first render; a late one from a page
    // already left is ignored.
    ready: () => {
      if (gen === generation) setReady(true);
    },
    isCurrent: () => gen === generation,
  };
  if (r.page === "queue") current = mountQueue(main, r, ctx);
  else if (r.page === "job") current = mountJob(main, r, ctx);
  else current = mountOverview(main, r, ctx);
  document.title =
    r.page === "queue" ? `${r.queue} - asyncq`
      : r.page === "job" ? `job ${r.job} - asyncq`
        : "asyncq";
}

async function start(refused = false) {
  let s;
  try {
    s = await rpc("session");
  } catch (e) {
    if (e instanceof AuthError && getToken()) {
      // A stale token: ask again without it.
      setToken(null);
      return start(true);
    }
    main.replaceChildren(
      h("p", { class: "error", role: "alert" },
        `Cannot reach asyncqd: ${e.message}`),
    );
    setReady(true);
    setTimeout(() => start(), 3000);
    return;
  }
  if (s.auth && !s.authorized) {
    applySession(s);
    session = null;
    const hadToken = !!getToken();
    if (hadToken) setToken(null);
    showTokenForm(refused || hadToken);
    return;
  }
  applySession(s);
  route();
}

window.addEventListener("hashchange", () => {
  route();
  main.focus({ preventScroll: true });
});
start();
