// ui/queue.js: one queue's jobs by state, a page at a time (list and its
// `next` cursor), with the queue's actions. Refreshed every second: the
// counts, and the page shown (rows kept, updated in place).

import { batch, rpc, AuthError, RpcError } from "./api.js";
import { h, setText, setAttr, fmtAge, fmtDuration, fmtNumber, fmtTime, jobSummary, every } from "./dom.js";
import { actionButton } from "./actions.js";

const PAGE = 50;
// Tab: [state, label, count from the queue's stats].
const TABS = [
  ["pending", "Pending", (q) => q.size],
  ["waiting", "Waiting", (q) => Math.max(0, q.unfinished - q.size - q.delayed - q.running)],
  ["delayed", "Delayed", (q) => q.delayed],
  ["running", "Running", (q) => q.running],
  ["done", "Done", (q) => q.done],
  ["failed", "Failed", (q) => q.failed],
  ["cancelled", "Cancelled", (q) => q.cancelled],
];
const FINISHED = new Set(["done", "failed", "cancelled"]);

export function mountQueue(main, route, ctx) {
  const name = route.queue;
  const state = TABS.some(([s]) => s === route.state) ? route.state : "pending";
  // Finished jobs newest first, live ones in the order they came.
  const order = FINISHED.has(state) ? "desc" : "asc";
  const cursors = [null]; // cursors[i]: the after/before of page i
  let page = 0;
  let next = null;
  let first = true;
  let stats = null;
  const rows = new Map(); // job id -> {tr, cells}
  const base = `#/queue/${encodeURIComponent(name)}`;

  const heading = h("h1", {}, "Queue ", h("span", { class: "name" }, name));
  const pausedBadge = h("span", { class: "badge warn", hidden: true }, "paused");
  const facts = h("p", { class: "muted summary" });
  const tabCounts = {};
  const tabs = h("nav", { class: "tabs", "aria-label": "Job states" },
    TABS.map(([s, label]) => {
      const count = h("span", { class: "count" }, "0");
      const a = h("a", {
        href: `${base}?state=${s}`,
        "data-testid": `tab-${s}`,
        "data-count": "0",
        "aria-current": s === state ? "page" : false,
      }, label, " ", count);
      tabCounts[s] = { a, count };
      return a;
    }));

  const again = () => refresh();
  const actions = h("div", { class: "actions" },
    actionButton(ctx, {
      action: "pause", label: "Pause", title: `Pause queue ${name}?`,
      text: "Consumers and workers stop taking jobs; running jobs go on.",
      ok: "Pause",
      call: async () => (await rpc("pause", { queue: name }), `Paused ${name}`),
    }, again),
    actionButton(ctx, {
      action: "resume", label: "Resume", title: `Resume queue ${name}?`,
      text: "Consumers and workers take jobs again.", ok: "Resume",
      call: async () => (await rpc("resume", { queue: name }), `Resumed ${name}`),
    }, again),
    actionButton(ctx, {
      action: "scale", label: "Scale", title: `Scale queue ${name}`,
      text: "How many in-daemon consumers should run this queue? Scaling " +
        "down lets busy consumers finish their job first.",
      ok: "Scale",
      input: () => ({ label: "Consumers", value: stats ? stats.consumers : 0, min: 0 }),
      call: async (n) => {
        const r = await rpc("scale", { queue: name, consumers: n });
        return `${name}: ${r.consumers} consumers`;
      },
    }, again),
    actionButton(ctx, {
      action: "retry-failed", label: "Retry all failed",
      title: `Retry every failed job of ${name}?`,
      text: "Each failed job runs again with its id and args; its attempts restart at 0.",
      ok: "Retry all",
      call: async () => `Retried ${(await rpc("retry", { queue: name, state: "failed" })).retried} jobs`,
    }, again),
    actionButton(ctx, {
      action: "delete-failed", label: "Delete all failed", danger: true,
      title: `Delete every failed job of ${name}?`,
      text: "Their records are removed for good.", ok: "Delete all",
      call: async () => `Deleted ${(await rpc("delete", { queue: name, state: "failed" })).deleted} jobs`,
    }, again),
    actionButton(ctx, {
      action: "cancel-pending", label: "Cancel all pending", danger: true,
      title: `Cancel every pending job of ${name}?`,
      text: "Every delayed, waiting and pending job is cancelled; running jobs go on.",
      ok: "Cancel all",
      call: async () => `Cancelled ${(await rpc("cancel", { queue: name })).cancelled} jobs`,
    }, again),
  );
  const buttons = {};
  for (const b of actions.querySelectorAll("button")) buttons[b.dataset.action] = b;

  const tbody = h("tbody");
  const table = h("table", { class: "data jobs", "data-testid": "jobs" },
    h("caption", { class: "visually-hidden" }, `${state} jobs of ${name}`),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Job"),
      h("th", { scope: "col" }, "Name / command"),
      h("th", { scope: "col" }, "Age"),
      h("th", { scope: "col", class: "num" }, "Attempts"),
      h("th", { scope: "col" }, FINISHED.has(state) ? "Error" : "Due / error"))),
    tbody);
  const empty = h("p", { class: "muted", hidden: true }, `No ${state} jobs.`);
  const prevBtn = h("button", { type: "button", "data-testid": "prev-page" }, "Previous page");
  const nextBtn = h("button", { type: "button", "data-testid": "next-page" }, "Next page");
  const pageInfo = h("span", { class: "muted" }, "page 1");
  prevBtn.addEventListener("click", () => {
    if (page === 0) return;
    page--;
    cursors.length = page + 1;
    refresh();
  });
  nextBtn.addEventListener("click", () => {
    if (next === null) return;
    cursors[page + 1] = next;
    page++;
    refresh();
  });
  const missing = h("p", { class: "error", role: "alert", hidden: true });

  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Queues"), " / ", name),
    h("div", { class: "page-head" }, heading, pausedBadge, facts),
    missing, actions, tabs,
    h("div", { class: "table-wrap" }, table), empty,
    h("div", { class: "pager" }, prevBtn, pageInfo, nextBtn),
  );

  function rowFor(rec) {
    let r = rows.get(rec.job);
    if (r) return r;
    const cells = {
      summary: h("span", { class: "cmd" }),
      name: h("span", { class: "jobname" }),
      age: h("td"),
      attempts: h("td", { class: "num" }),
      error: h("td", { class: "err" }),
    };
    const tr = h("tr", { "data-job": rec.job },
      h("td", {}, h("a", { href: `#/job/${rec.job}`, "data-testid": "job-link" }, `#${rec.job}`)),
      h("td", {}, cells.name, cells.summary),
      cells.age, cells.attempts, cells.error);
    r = { tr, cells };
    rows.set(rec.job, r);
    return r;
  }

  function renderJobs(jobs) {
    const seen = new Set();
    jobs.forEach((rec, i) => {
      const r = rowFor(rec);
      seen.add(rec.job);
      setText(r.cells.name, rec.name ? rec.name + " " : "");
      setText(r.cells.summary, jobSummary(rec));
      setText(r.cells.age, fmtAge(rec.created));
      setAttr(r.cells.age, "title", fmtTime(rec.created));
      setText(r.cells.attempts, fmtNumber(rec.attempts));
      let err = "";
      if (rec.error) err = `${rec.error.code}: ${rec.error.message}`;
      else if (rec.due) err = `due in ${fmtDuration(rec.due - Date.now() / 1000)}`;
      setText(r.cells.error, err);
      if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
    });
    for (const [id, r] of rows) {
      if (seen.has(id)) continue;
      r.tr.remove();
      rows.delete(id);
    }
    empty.hidden = jobs.length !== 0;
  }

  function renderStats(q) {
    stats = q;
    pausedBadge.hidden = !q.paused;
    setText(facts, `${q.kind || ""} · ${fmtNumber(q.consumers)} consumers, ` +
      `${fmtNumber(q.running)} running, ${fmtNumber(q.unfinished)} unfinished` +
      (q.maxsize ? ` of ${q.maxsize}` : "") +
      (q.rate ? ` · rate ${q.rate.per_second}/s (burst ${q.rate.burst}), ` +
        `throttled ${fmtDuration(q.throttled ?? 0)}` : ""));
    for (const [s, , count] of TABS) {
      const n = String(count(q) || 0);
      setAttr(tabCounts[s].a, "data-count", n);
      setText(tabCounts[s].count, n);
    }
    buttons.pause.disabled = !ctx.writable || q.paused;
    buttons.resume.disabled = !ctx.writable || !q.paused;
  }

  async function refresh() {
    const params = { queue: name, state, limit: PAGE, order };
    const cursor = cursors[page];
    if (cursor !== null) params[order === "asc" ? "after" : "before"] = cursor;
    let replies;
    try {
      replies = await batch([["stats", { queue: name }], ["list", params]]);
    } catch (e) {
      if (e instanceof AuthError) return ctx.authFailed();
      ctx.notify(`Cannot refresh: ${e.message}`, "error");
      return;
    }
    if (!ctx.isCurrent()) return;
    const [st, list] = replies;
    if (st instanceof RpcError) {
      missing.hidden = false;
      setText(missing, st.code === -32002 ? `No queue called ${name}.` : `stats: ${st.message}`);
    } else {
      missing.hidden = true;
      const q = st.queues && st.queues[name];
      if (q) renderStats(q);
    }
    if (!(list instanceof RpcError)) {
      next = list.next ?? null;
      renderJobs(list.jobs || []);
    }
    nextBtn.disabled = next === null;
    prevBtn.disabled = page === 0;
    setText(pageInfo, `page ${page + 1}`);
    if (first) {
      first = false;
      ctx.ready();
    }
  }

  const stop = every(1000, refresh);
  return { stop };
}
