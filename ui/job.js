// ui/job.js: one job's record (status), refreshed every second: its
// state, args, result, output, error, timeline and dependencies, with
// retry, cancel and delete. Every value is set as text.

import { rpc, AuthError, RpcError } from "./api.js";
import { h, setText, fmtTime, fmtDuration, every } from "./dom.js";
import { actionButton } from "./actions.js";

const LIVE = new Set(["delayed", "waiting", "pending", "running"]);

function pretty(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

export function mountJob(main, route, ctx) {
  const id = route.job;
  let rec = null;
  let first = true;
  let gone = false;

  const stateEl = h("span", { class: "badge", "data-testid": "job-state" }, "");
  const queueLink = h("a", { href: "#/" }, "");
  const crumbs = h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Queues"), " / ", queueLink, ` / #${id}`);
  const facts = h("dl", { class: "facts" });
  const factCells = {};
  for (const [key, label] of [
    ["queue", "Queue"], ["kind", "Kind"], ["name", "Name"], ["batch", "Batch"],
    ["priority", "Priority"], ["attempts", "Attempts"], ["retried", "Retried by hand"],
    ["worker", "Worker"],
  ]) {
    const dd = h("dd");
    const row = h("div", { class: "fact" }, h("dt", {}, label), dd);
    facts.append(row);
    factCells[key] = { row, dd };
  }
  const timeline = h("ol", { class: "timeline", "data-testid": "timeline" });
  const args = h("pre", { "data-testid": "job-args", class: "code" });
  const result = h("pre", { "data-testid": "job-result", class: "code" });
  const stdout = h("pre", { "data-testid": "job-stdout", class: "code out" });
  const stderr = h("pre", { "data-testid": "job-stderr", class: "code out" });
  const noStdout = h("p", { class: "muted" }, "No output.");
  const noStderr = h("p", { class: "muted" }, "No output.");
  const truncated = h("p", { class: "muted", hidden: true }, "Output was truncated.");
  const error = h("p", { "data-testid": "job-error", class: "err" });
  const deps = h("ul", { class: "deps" });
  const depsSection = h("section", { hidden: true }, h("h2", {}, "Depends on"), deps);
  const missing = h("p", { class: "error", role: "alert", hidden: true });

  const again = () => refresh();
  const retryBtn = actionButton(ctx, {
    action: "retry", label: "Retry", title: `Retry job ${id}?`,
    text: "It runs again with the same id and args; attempts restart at 0.",
    ok: "Retry",
    call: async () => `Job ${id} retried: ${(await rpc("retry", { job: id })).state}`,
  }, again);
  const cancelBtn = actionButton(ctx, {
    action: "cancel", label: "Cancel", danger: true, title: `Cancel job ${id}?`,
    text: "A pending job is removed; a running one is interrupted and not retried.",
    ok: "Cancel job",
    call: async () => (await rpc("cancel", { job: id }), `Job ${id} cancelled`),
  }, again);
  const deleteBtn = actionButton(ctx, {
    action: "delete", label: "Delete", danger: true, title: `Delete job ${id}?`,
    text: "Its record is removed for good.", ok: "Delete",
    call: async () => {
      await rpc("delete", { job: id });
      const q = rec && rec.queue;
      location.hash = q ? `#/queue/${encodeURIComponent(q)}?state=${rec.state}` : "#/";
      return `Job ${id} deleted`;
    },
  }, null);

  main.append(
    crumbs,
    h("div", { class: "page-head" }, h("h1", {}, `Job #${id}`), stateEl),
    missing,
    h("div", { class: "actions" }, retryBtn, cancelBtn, deleteBtn),
    h("div", { class: "job-grid" },
      h("section", { class: "card" }, h("h2", {}, "Record"), facts),
      h("section", { class: "card" }, h("h2", {}, "Timeline"), timeline)),
    h("section", {}, h("h2", {}, "Error"), error),
    depsSection,
    h("section", {}, h("h2", {}, "Args"), args),
    h("section", {}, h("h2", {}, "Result"), result),
    h("section", {}, h("h2", {}, "Stdout"), stdout, noStdout),
    h("section", {}, h("h2", {}, "Stderr"), stderr, noStderr, truncated),
  );

  function renderTimeline(r) {
    const steps = [["created", "Created", r.created]];
    if (r.due) steps.push(["due", LIVE.has(r.state) ? "Due" : "Was due", r.due]);
    if (r.started) steps.push(["started", "Started", r.started]);
    if (r.lease_deadline && r.state === "running")
      steps.push(["lease", "Lease ends", r.lease_deadline]);
    if (r.finished) steps.push(["finished", `Finished (${r.state})`, r.finished]);
    steps.sort((a, b) => a[2] - b[2]);
    const key = steps.map((s) => `${s[0]}:${s[2]}`).join(",");
    if (timeline.dataset.key === key) return;
    timeline.dataset.key = key;
    timeline.replaceChildren(...steps.map(([k, label, t]) =>
      h("li", { "data-step": k },
        h("span", { class: "step" }, label),
        h("time", { datetime: new Date(t * 1000).toISOString() }, fmtTime(t)),
        t !== r.created ? h("span", { class: "muted" }, ` +${fmtDuration(t - r.created)}`) : null)));
  }

  function render(r) {
    rec = r;
    setText(stateEl, r.state);
    stateEl.className = `badge state-${r.state}`;
    setText(queueLink, r.queue);
    queueLink.setAttribute("href", `#/queue/${encodeURIComponent(r.queue)}?state=${r.state}`);
    for (const [key, { row, dd }] of Object.entries(factCells)) {
      const v = r[key];
      row.hidden = v === undefined || v === null || v === "";
      setText(dd, v ?? "");
    }
    renderTimeline(r);
    setText(args, pretty(r.args ?? {}));
    let res = r.result;
    let out = "", err = "";
    if (res && typeof res === "object" && !Array.isArray(res)) {
      out = typeof res.stdout === "string" ? res.stdout : "";
      err = typeof res.stderr === "string" ? res.stderr : "";
      truncated.hidden = !res.truncated;
      res = Object.fromEntries(Object.entries(res).filter(([k]) => k !== "stdout" && k !== "stderr"));
    }
    setText(result, res === undefined ? "" : pretty(res));
    setText(stdout, out);
    setText(stderr, err);
    stdout.hidden = out === "";
    stderr.hidden = err === "";
    noStdout.hidden = out !== "";
    noStderr.hidden = err !== "";
    setText(error, r.error ? `${r.error.code}: ${r.error.message}` : "None.");
    error.classList.toggle("muted", !r.error);
    const after = Array.isArray(r.after) ? r.after : [];
    depsSection.hidden = after.length === 0;
    const depKey = after.join(",");
    if (deps.dataset.key !== depKey) {
      deps.dataset.key = depKey;
      deps.replaceChildren(...after.map((d) =>
        h("li", {}, h("a", { href: `#/job/${d}` }, `#${d}`))));
    }
    const live = LIVE.has(r.state);
    retryBtn.disabled = !ctx.writable || live;
    cancelBtn.disabled = !ctx.writable || !live;
    deleteBtn.disabled = !ctx.writable || live;
  }

  async function refresh() {
    if (gone) return;
    let r;
    try {
      r = await rpc("status", { job: id });
    } catch (e) {
      if (e instanceof AuthError) return ctx.authFailed();
      if (!ctx.isCurrent()) return;
      missing.hidden = false;
      if (e instanceof RpcError && e.code === -32004) {
        setText(missing, `No job #${id} (never put, deleted, or its record expired).`);
        setText(stateEl, "unknown");
        retryBtn.disabled = cancelBtn.disabled = deleteBtn.disabled = true;
      } else setText(missing, `status: ${e.message}`);
    }
    if (!ctx.isCurrent()) return;
    if (r) {
      missing.hidden = true;
      render(r);
    }
    if (first) {
      first = false;
      ctx.ready();
    }
  }

  const stop = every(1000, refresh);
  return { stop: () => { gone = true; stop(); } };
}
