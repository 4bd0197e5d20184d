// ui/chart.js: done and failed jobs per second over the last 15 minutes,
// as an SVG of two polylines. The <svg> is made once; each update only
// rewrites the points and labels, so a refresh never flickers.

import { h, svg, setText, setAttr } from "./dom.js";

export const SPAN = 900; // seconds shown: the daemon keeps 900 samples
const HEIGHT = 100;

// A round maximum for the y axis at or above max: 1, 2, 5, 10, 20, ...
function niceMax(max) {
  if (max <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

function points(values, top) {
  const n = values.length;
  let out = "";
  for (let i = 0; i < n; i++) {
    const x = SPAN - n + i;
    const y = HEIGHT - (values[i] / top) * HEIGHT;
    out += `${x},${y.toFixed(2)} `;
  }
  return out.trimEnd();
}

export function createChart() {
  const done = svg("polyline", { class: "line done", points: "", "vector-effect": "non-scaling-stroke" });
  const failed = svg("polyline", { class: "line failed", points: "", "vector-effect": "non-scaling-stroke" });
  const grid = [0.25, 0.5, 0.75].map((f) =>
    svg("line", { class: "grid", x1: 0, x2: SPAN, y1: HEIGHT * f, y2: HEIGHT * f, "vector-effect": "non-scaling-stroke" }));
  const title = svg("title", {}, "Jobs done and failed per second");
  const plot = svg(
    "svg",
    {
      "data-testid": "chart",
      class: "plot",
      viewBox: `0 0 ${SPAN} ${HEIGHT}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": "Jobs done and failed per second, last 15 minutes",
    },
    title, ...grid, done, failed,
  );
  const yMax = h("span", { class: "ymax" }, "1/s");
  const nowDone = h("span", { class: "now done" }, "0");
  const nowFailed = h("span", { class: "now failed" }, "0");
  const note = h("p", { class: "muted chart-note" });
  const el = h(
    "figure",
    { class: "chart card" },
    h("figcaption", {},
      h("span", {}, "Per second, last 15 minutes: "),
      h("span", { class: "key done" }, "done "), nowDone, " ",
      h("span", { class: "key failed" }, "failed "), nowFailed),
    h("div", { class: "plot-wrap" }, yMax, plot),
    h("div", { class: "xaxis", "aria-hidden": "true" },
      h("span", {}, "-15 min"), h("span", {}, "-10 min"),
      h("span", {}, "-5 min"), h("span", {}, "now")),
    note,
  );

  // doneValues, failedValues: one number a second, oldest first, the last
  // being the last complete second.
  function update(doneValues, failedValues) {
    let max = 0;
    for (const v of doneValues) if (v > max) max = v;
    for (const v of failedValues) if (v > max) max = v;
    const top = niceMax(max);
    setAttr(done, "points", points(doneValues, top));
    setAttr(failed, "points", points(failedValues, top));
    setText(yMax, `${top}/s`);
    const last = (a) => (a.length ? a[a.length - 1] : 0);
    setText(nowDone, String(last(doneValues)));
    setText(nowFailed, String(last(failedValues)));
    let sumDone = 0, sumFailed = 0;
    for (const v of doneValues) sumDone += v;
    for (const v of failedValues) sumFailed += v;
    setText(title, `Last 15 minutes: ${sumDone} done, ${sumFailed} failed`);
  }

  function setNote(text) {
    setText(note, text);
  }

  return { el, update, setNote };
}

// The history of every queue, kept aligned on one end second so that each
// refresh asks only for the seconds it has not seen (history's `seconds`).
export class History {
  constructor() {
    this.end = 0; // the last complete second held (epoch s), 0: none yet
    this.queues = new Map(); // name -> {done: [], failed: []}, SPAN long
    this.fetchedAt = 0; // Date.now() of the last merge
  }

  // The `seconds` to ask for next.
  wanted() {
    if (this.end === 0) return SPAN;
    const gap = Math.ceil((Date.now() - this.fetchedAt) / 1000) + 2;
    return Math.min(SPAN, Math.max(2, gap));
  }

  // Merges a history result ({interval, end, queues}).
  merge(res) {
    if (!res || typeof res.end !== "number") return;
    const end = res.end;
    if (end < this.end) return;
    const shift = this.end === 0 ? SPAN : Math.min(SPAN, end - this.end);
    const names = new Set([...this.queues.keys(), ...Object.keys(res.queues || {})]);
    for (const name of names) {
      let q = this.queues.get(name);
      if (!q) {
        q = { done: new Array(SPAN).fill(0), failed: new Array(SPAN).fill(0) };
        this.queues.set(name, q);
      }
      const got = (res.queues || {})[name];
      for (const key of ["done", "failed"]) {
        const a = q[key];
        if (shift > 0) {
          a.splice(0, shift);
          for (let i = 0; i < shift; i++) a.push(0);
        }
        const src = got && Array.isArray(got[key]) ? got[key] : null;
        if (!src) continue;
        // src's last sample is second `end`, a's last slot too.
        const n = Math.min(src.length, SPAN);
        for (let i = 0; i < n; i++)
          a[SPAN - n + i] = src[src.length - n + i];
      }
    }
    this.end = end;
    this.fetchedAt = Date.now();
  }

  // Sums over the queues named in filter (all when it is null).
  totals(filter) {
    const done = new Array(SPAN).fill(0);
    const failed = new Array(SPAN).fill(0);
    for (const [name, q] of this.queues) {
      if (filter !== null && filter !== name) continue;
      for (let i = 0; i < SPAN; i++) {
        done[i] += q.done[i];
        failed[i] += q.failed[i];
      }
    }
    return { done, failed };
  }

  forget(name) {
    this.queues.delete(name);
  }
}
