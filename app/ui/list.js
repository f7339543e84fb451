// The task list: GET /tasks, newest first, filtered by status, a page at a
// time. The filter and the page live in the address (#/tasks?status=…&
// offset=…), so the browser's back button and a reload keep them.

import { apiJson } from "./api.js";
import { FINISHED, el, errorText, fill, formatTime, notice, statusBadge, taskDuration } from "./dom.js";

const STATUSES = ["pending", "running", "completed", "error", "cancelled"];
const PAGE_SIZE = 20;
const MAX_PAGE_SIZE = 1000; // the API's list_max_limit default
// While a listed task is unfinished the list reloads itself this often.
const REFRESH_MS = 3000;

function whole(value, fallback, low, high) {
  const number = Number.parseInt(value, 10);
  return Number.isFinite(number) ? Math.min(Math.max(number, low), high) : fallback;
}

export function listHash({ status = "", limit = PAGE_SIZE, offset = 0 }) {
  const query = new URLSearchParams();
  if (status) query.set("status", status);
  if (limit !== PAGE_SIZE) query.set("limit", String(limit));
  if (offset) query.set("offset", String(offset));
  const text = query.toString();
  return text ? `#/tasks?${text}` : "#/tasks";
}

function row(task) {
  const link = `#/tasks/${encodeURIComponent(task.task_id)}`;
  return el("tr", { "data-task-id": task.task_id },
    el("td", {}, statusBadge(task.status)),
    el("td", { class: "instruction-cell" },
      el("a", { href: link, class: "task-link" }, task.instruction),
      el("div", { class: "task-id" }, task.task_id)),
    el("td", { class: "nowrap" }, formatTime(task.created_at)),
    el("td", { class: "nowrap" }, taskDuration(task)));
}

function table(tasks) {
  return el("table", { class: "tasks", id: "task-table" },
    el("thead", {}, el("tr", {},
      el("th", {}, "Status"), el("th", {}, "Instruction"), el("th", {}, "Created"), el("th", {}, "Ran for"))),
    el("tbody", {}, tasks.map(row)));
}

function pager({ status, limit, offset }, shown, total) {
  const previous = offset > 0 ? listHash({ status, limit, offset: Math.max(0, offset - limit) }) : null;
  const next = offset + shown < total ? listHash({ status, limit, offset: offset + limit }) : null;
  const link = (hash, label, id) => hash
    ? el("a", { class: "button secondary", href: hash, id }, label)
    : el("span", { class: "button secondary disabled", "aria-disabled": "true", id }, label);
  const range = shown ? `${offset + 1}–${offset + shown} of ${total}` : `0 of ${total}`;
  return el("div", { class: "pager" },
    el("span", { class: "muted", id: "page-range" }, range),
    link(previous, "← Newer", "page-newer"),
    link(next, "Older →", "page-older"));
}

export async function showTaskList({ view, signal, navigate }, params) {
  const status = STATUSES.includes(params.get("status")) ? params.get("status") : "";
  const limit = whole(params.get("limit"), PAGE_SIZE, 1, MAX_PAGE_SIZE);
  const offset = whole(params.get("offset"), 0, 0, Number.MAX_SAFE_INTEGER);
  const filter = el("select", { id: "status-filter", "aria-label": "Status" },
    el("option", { value: "" }, "All statuses"),
    STATUSES.map((name) => el("option", { value: name }, name)));
  filter.value = status;
  filter.addEventListener("change", () => navigate(listHash({ status: filter.value, limit, offset: 0 })));
  const body = el("div", { class: "list-body" }, el("p", { class: "muted" }, "Loading…"));
  const reload = el("button", { type: "button", class: "secondary", id: "reload" }, "Refresh");
  fill(view, el("section", { class: "panel" },
    el("div", { class: "toolbar" },
      el("h1", {}, "Tasks"),
      el("div", { class: "toolbar-actions" },
        el("label", { class: "inline-label" }, "Status ", filter),
        reload,
        el("a", { class: "button", href: "#/new" }, "New task"))),
    body));

  let timer = null;
  signal.addEventListener("abort", () => clearTimeout(timer));

  async function load() {
    clearTimeout(timer);
    const query = new URLSearchParams({ limit: String(limit), offset: String(offset) });
    if (status) query.set("status", status);
    let page;
    try {
      page = await apiJson(`/tasks?${query}`, { signal });
    } catch (error) {
      if (!signal.aborted) fill(body, notice("error", `Could not list the tasks: ${errorText(error)}`));
      return;
    }
    // The API sends them newest first; an object keeps that order.
    const tasks = Object.values(page.tasks);
    if (!tasks.length) {
      const what = status ? `No ${status} tasks` : "No tasks yet";
      fill(body, el("div", { class: "empty" }, el("p", {}, `${what}.`),
        el("a", { class: "button", href: "#/new" }, "Submit a task")), pager({ status, limit, offset }, 0, page.total));
    } else {
      fill(body, table(tasks), pager({ status, limit, offset }, tasks.length, page.total));
    }
    if (tasks.some((task) => !FINISHED.has(task.status)) && !signal.aborted) timer = setTimeout(load, REFRESH_MS);
  }

  reload.addEventListener("click", load);
  await load();
}
