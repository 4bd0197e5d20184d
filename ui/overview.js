// ui/overview.js: every queue with its live counts (stats) and the
// done/failed chart (history), refreshed each second in one batch. Rows
// are made once per queue and then only their text changes.

import { batch, AuthError, RpcError } from "./api.js";
import { h, setText, fmtDuration, fmtNumber } from "./dom.js";
import { createChart, History } from "./chart.js";
import { every } from "./dom.js";

// Column: [data-field, heading, value from a queue's stats].
const COLUMNS = [
  ["ready", "Ready", (q) => fmtNumber(q.size)],
  ["delayed", "Delayed", (q) => fmtNumber(q.delayed)],
  ["running", "Running", (q) => fmtNumber(q.running)],
  ["unfinished", "Unfinished", (q) => fmtNumber(q.unfinished)],
  ["failed", "Failed", (q) => fmtNumber(q.failed)],
  ["consumers", "Consumers", (q) => fmtNumber(q.consumers)],
  ["workers", "Workers", (q) => fmtNumber(q.workers)],
  ["paused", "Paused", (q) => (q.paused ? "yes" : "no")],
  ["oldest", "Oldest ready", (q) => fmtDuration(q.oldest_ready ?? 0)],
];

export function mountOverview(main, route, ctx) {
  const rows = new Map(); // queue name -> {tr, cells: {field: td}}
  const history = new History();
  let historyOk = true;
  let first = true;
  let chartQueue = null; // null: all queues

  const tbody = h("tbody");
  const table = h(
    "table",
    { "data-testid": "queues", class: "data queues" },
    h("caption", { class: "visually-hidden" }, "Queues"),
    h("thead", {},
      h("tr", {},
        h("th", { scope: "col" }, "Queue"),
        COLUMNS.map(([field, label]) =>
          h("th", { scope: "col", class: field === "paused" || field === "oldest" ? "" : "num" }, label)))),
    tbody,
  );
  const empty = h("p", { class: "muted", hidden: true }, "No queues configured.");
  const summary = h("p", { class: "muted summary" });
  const chart = createChart();
  const select = h("select", { id: "chart-queue" }, h("option", { value: "" }, "all queues"));
  select.addEventListener("change", () => {
    chartQueue = select.value === "" ? null : select.value;
    draw();
  });

  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Queues"), summary),
    h("div", { class: "table-wrap" }, table),
    empty,
    h("div", { class: "chart-head" },
      h("h2", {}, "Throughput"),
      h("label", { for: "chart-queue" }, "Queue "), select),
    chart.el,
  );

  function draw() {
    const t = history.totals(chartQueue);
    chart.update(t.done, t.failed);
  }

  function rowFor(name) {
    let r = rows.get(name);
    if (r) return r;
    const cells = {};
    const tr = h("tr", { "data-queue": name },
      h("th", { scope: "row" },
        h("a", { href: `#/queue/${encodeURIComponent(name)}`, "data-testid": "queue-link" }, name)),
      COLUMNS.map(([field]) => {
        const td = h("td", { "data-field": field, class: field === "paused" || field === "oldest" ? "" : "num" });
        cells[field] = td;
        return td;
      }));
    r = { tr, cells };
    rows.set(name, r);
    select.append(h("option", { value: name }, name));
    return r;
  }

  function render(stats) {
    const queues = stats.queues || {};
    const names = Object.keys(queues).sort();
    let totalUnfinished = 0, totalRunning = 0;
    names.forEach((name, i) => {
      const q = queues[name];
      const r = rowFor(name);
      for (const [field, , value] of COLUMNS) setText(r.cells[field], value(q));
      r.tr.classList.toggle("paused", !!q.paused);
      r.tr.classList.toggle("has-failed", (q.failed || 0) > 0);
      if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
      totalUnfinished += q.unfinished || 0;
      totalRunning += q.running || 0;
    });
    for (const [name, r] of rows) {
      if (name in queues) continue;
      r.tr.remove();
      rows.delete(name);
      history.forget(name);
      for (const o of select.options) if (o.value === name) o.remove();
    }
    empty.hidden = names.length !== 0;
    setText(summary, `${names.length} queue${names.length === 1 ? "" : "s"}, ` +
      `${totalUnfinished} unfinished, ${totalRunning} running, ` +
      `up ${fmtDuration(stats.uptime)}`);
  }

  async function refresh() {
    const calls = [["stats", undefined]];
    if (historyOk) calls.push(["history", { seconds: history.wanted() }]);
    let replies;
    try {
      replies = await batch(calls);
    } catch (e) {
      if (e instanceof AuthError) return ctx.authFailed();
      ctx.notify(`Cannot refresh: ${e.message}`, "error");
      return;
    }
    if (!ctx.isCurrent()) return;
    const [stats, hist] = replies;
    if (stats instanceof RpcError) {
      ctx.notify(`stats: ${stats.message}`, "error");
    } else {
      render(stats);
    }
    if (historyOk && hist instanceof RpcError) {
      // A daemon without `history`: the table still works.
      historyOk = false;
      chart.setNote(`No chart: history: ${hist.message}`);
    } else if (historyOk) {
      history.merge(hist);
      draw();
    }
    if (first) {
      first = false;
      ctx.ready();
    }
  }

  const stop = every(1000, refresh);
  return { stop };
}
