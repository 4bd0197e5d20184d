// ui/dom.js: building elements and formatting values. Data only ever
// reaches the page as text nodes or attribute values, never as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = String(v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h("a", {href: "#/", class: "x", onclick: fn}, "text", child...)
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// Sets text only when it changed: no layout work, no flicker.
export function setText(el, value) {
  const s = String(value);
  if (el.textContent !== s) el.textContent = s;
}

export function setAttr(el, name, value) {
  const s = String(value);
  if (el.getAttribute(name) !== s) el.setAttribute(name, s);
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

// 0.4 -> "0s", 75 -> "1m 15s", 7300 -> "2h 01m", 200000 -> "2d 7h".
export function fmtDuration(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0)
    return "-";
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

// Epoch seconds -> "2026-12-06 11:41:53.287" in local time.
export function fmtTime(epoch) {
  if (typeof epoch !== "number") return "-";
  const d = new Date(epoch * 1000);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.` +
    pad(d.getMilliseconds(), 3)
  );
}

// How long ago epoch was, as a duration ("12s").
export function fmtAge(epoch) {
  if (typeof epoch !== "number") return "-";
  return fmtDuration(Math.max(0, Date.now() / 1000 - epoch));
}

export function fmtNumber(n) {
  return typeof n === "number" ? String(n) : "0";
}

// An argv word as a shell would need it written.
function shellWord(w) {
  const s = String(w);
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return "'" + s.replace(/'/g, "'\\''") + "'";
}

// What a job does, in one line: its name, else its command or URL.
export function jobSummary(rec) {
  const args = rec.args || {};
  if (Array.isArray(args.argv)) return args.argv.map(shellWord).join(" ");
  if (typeof args.url === "string")
    return `${args.method || "GET"} ${args.url}`;
  const text = JSON.stringify(args);
  return text.length > 120 ? text.slice(0, 117) + "..." : text;
}

// Calls fn now and then every period_ms after each run ends (runs never
// overlap); skipped while the tab is hidden. Returns a stop function.
export function every(periodMs, fn) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
      } catch (e) {
        console.error(e);
      }
    }
    if (!stopped) timer = setTimeout(run, periodMs);
  };
  const onVisible = () => {
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      run();
    }
  };
  document.addEventListener("visibilitychange", onVisible);
  run();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
  };
}
