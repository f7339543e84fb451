// Building the page from data the model and its code wrote, so every piece
// of text goes in as a text node: nothing here parses a string as HTML.

// el("a", {href: "#/tasks", class: "link", onclick: go}, "text", child, ...)
// Properties: "class", "value" (a form field's), on<event> listeners, and
// plain attributes; children: nodes, strings (as text), null/false (skipped).
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "value") node.value = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

// Replace what `node` holds with `children`.
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const FINISHED = new Set(["completed", "error", "cancelled"]);

export function statusBadge(status) {
  const known = ["pending", "running", "completed", "error", "cancelled"].includes(status);
  return el("span", { class: `badge badge-${known ? status : "unknown"}`, "data-status": status }, status);
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function formatClock(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function formatDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

// How long a task ran (or has been running), from its status fields.
export function taskDuration(task) {
  if (!task.started_at) return "—";
  const end = task.completed_at ? new Date(task.completed_at) : new Date();
  return formatDuration(end - new Date(task.started_at));
}

export function formatBytes(size) {
  if (typeof size !== "number" || !Number.isFinite(size)) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// A message box for failures and confirmations.
export function notice(kind, ...children) {
  return el("div", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, ...children);
}

export function errorText(error) {
  return error && error.message ? error.message : String(error);
}
