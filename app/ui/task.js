// One task: its status (GET /tasks/{id}), its events as they happen (the
// SSE stream, see events.js), its answer (from task_end), its files (GET
// /tasks/{id}/files) to view or download, and Cancel (DELETE /tasks/{id}).

import { ApiError, apiFetch, apiJson, apiPath, filePath } from "./api.js";
import { FINISHED, el, errorText, fill, formatBytes, formatTime, notice, statusBadge, taskDuration } from "./dom.js";
import { followEvents } from "./events.js";
import { renderEvent } from "./timeline.js";

// Files larger than this are offered for download only, not shown.
const PREVIEW_MAX_BYTES = 512 * 1024;

const STREAM_STATES = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  ended: "Complete",
  failed: "Not following",
};

function fact(label, value) {
  return [el("dt", {}, label), el("dd", {}, value)];
}

function baseName(path) {
  return path.split("/").pop() || "file";
}

// A download made in the page, so it carries the token: the file is fetched,
// then handed to the browser as a blob. Its type is octet-stream whatever
// the file is, so the browser saves it and never opens it as a page of
// this origin (a model-written .html would otherwise run here).
async function download(taskId, path, signal) {
  const response = await apiFetch(filePath(taskId, path), { signal });
  const blob = new Blob([await response.blob()], { type: "application/octet-stream" });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: baseName(path), hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // Revoked later, not now: the browser reads the blob after the click.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

class FilePreview {
  constructor(taskId, signal) {
    this.taskId = taskId;
    this.signal = signal;
    this.title = el("h2", {}, "Preview");
    this.body = el("div", { class: "preview-body" });
    this.url = null;
    const close = el("button", { type: "button", class: "secondary small", onclick: () => this.hide() }, "Close");
    this.card = el("section", { class: "card", id: "preview", hidden: true },
      el("div", { class: "card-head" }, this.title, close), this.body);
    signal.addEventListener("abort", () => this.release());
  }

  release() {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }

  hide() {
    this.release();
    this.card.hidden = true;
  }

  // Text in a <pre>, images in an <img> (which never runs a script);
  // anything else is for downloading.
  async show(file) {
    this.release();
    this.card.hidden = false;
    this.title.textContent = file.path;
    fill(this.body, el("p", { class: "muted" }, "Loading…"));
    if (file.size > PREVIEW_MAX_BYTES) {
      fill(this.body, el("p", { class: "muted" }, `Too large to show here (${formatBytes(file.size)}): download it.`));
      return;
    }
    try {
      const response = await apiFetch(filePath(this.taskId, file.path), { signal: this.signal });
      const type = (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
      const data = await response.arrayBuffer();
      if (type.startsWith("image/")) {
        this.url = URL.createObjectURL(new Blob([data], { type }));
        fill(this.body, el("img", { src: this.url, alt: file.path, class: "preview-image" }));
        return;
      }
      let shown;
      try {
        shown = new TextDecoder("utf-8", { fatal: true }).decode(data);
      } catch {
        fill(this.body, el("p", { class: "muted" }, "Not a text file: download it to open it."));
        return;
      }
      fill(this.body, el("pre", { class: "output-text", id: "preview-text" }, shown));
    } catch (error) {
      if (!this.signal.aborted) fill(this.body, notice("error", `Could not open ${file.path}: ${errorText(error)}`));
    }
  }
}

class FilesCard {
  constructor(taskId, signal, preview) {
    this.taskId = taskId;
    this.signal = signal;
    this.preview = preview;
    this.body = el("div", {}, el("p", { class: "muted" }, "Loading…"));
    this.card = el("section", { class: "card", id: "files" }, el("h2", {}, "Files"), this.body);
    this.loading = null;
    this.again = false;
  }

  // Reloads the list; calls made while one load runs fold into one more.
  refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = this.load().finally(() => {
      this.loading = null;
      if (this.again && !this.signal.aborted) {
        this.again = false;
        this.refresh();
      }
    });
    return this.loading;
  }

  async load() {
    let listing;
    try {
      listing = await apiJson(apiPath("tasks", this.taskId, "files"), { signal: this.signal });
    } catch (error) {
      if (!this.signal.aborted) fill(this.body, notice("error", `Could not list the files: ${errorText(error)}`));
      return;
    }
    if (!listing.files.length) {
      fill(this.body, el("p", { class: "muted" }, "No files yet."));
      return;
    }
    fill(this.body,
      el("ul", { class: "files", id: "file-list" }, listing.files.map((file) => this.item(file))),
      listing.truncated ? el("p", { class: "muted small" }, "More files exist than the server lists.") : null);
  }

  item(file) {
    const failed = el("span", { class: "error-message small" });
    const save = async () => {
      failed.textContent = "";
      try {
        await download(this.taskId, file.path, this.signal);
      } catch (error) {
        if (!this.signal.aborted) failed.textContent = errorText(error);
      }
    };
    return el("li", { class: "file", "data-path": file.path },
      el("div", { class: "file-name" }, file.path),
      el("div", { class: "file-facts muted small" }, `${formatBytes(file.size)} · ${formatTime(file.modified)}`),
      el("div", { class: "file-actions" },
        el("button", { type: "button", class: "secondary small file-view", onclick: () => this.preview.show(file) },
          "View"),
        el("button", { type: "button", class: "small file-download", onclick: save }, "Download"),
        failed));
  }
}

class TaskHeader {
  constructor(taskId, signal) {
    this.taskId = taskId;
    this.signal = signal;
    this.message = el("div", { class: "action-message", id: "action-message" });
    this.node = el("section", { class: "panel task-header", id: "task-header" },
      el("p", { class: "muted" }, "Loading…"));
    this.task = null;
  }

  async refresh() {
    this.show(await apiJson(apiPath("tasks", this.taskId), { signal: this.signal }));
  }

  show(task) {
    this.task = task;
    const running = !FINISHED.has(task.status);
    const actions = el("div", { class: "task-actions" },
      running ? el("button", { type: "button", class: "danger", id: "cancel-task",
                               onclick: (event) => this.cancel(event.target) }, "Cancel task") : null,
      !running ? el("a", { class: "button secondary", id: "follow-up",
                           href: `#/new?previous=${encodeURIComponent(task.task_id)}` }, "Follow up") : null);
    fill(this.node,
      el("div", { class: "task-title" },
        el("h1", {}, "Task"), statusBadge(task.status), el("span", { class: "spacer" }), actions),
      el("p", { class: "instruction", id: "task-instruction" }, task.instruction),
      el("dl", { class: "facts" },
        fact("ID", el("code", {}, task.task_id)),
        fact("Created", formatTime(task.created_at)),
        fact("Started", formatTime(task.started_at)),
        fact("Finished", formatTime(task.completed_at)),
        fact("Ran for", taskDuration(task)),
        task.previous_task_id
          ? fact("Continues", el("a", { href: `#/tasks/${encodeURIComponent(task.previous_task_id)}` },
            task.previous_task_id))
          : null),
      task.error ? notice("error", el("strong", {}, "Error: "), task.error) : null,
      this.message);
  }

  async cancel(button) {
    button.disabled = true;
    button.textContent = "Cancelling…";
    try {
      // The API answers once the task has stopped (within cancel_wait_s).
      const answer = await apiJson(apiPath("tasks", this.taskId), { method: "DELETE", signal: this.signal });
      fill(this.message, notice("ok", answer.message));
      await this.refresh();
    } catch (error) {
      if (this.signal.aborted) return;
      fill(this.message, notice("error", `Could not cancel: ${errorText(error)}`));
      button.disabled = false;
      button.textContent = "Cancel task";
    }
  }
}

export async function showTask({ view, signal }, taskId) {
  const header = new TaskHeader(taskId, signal);
  const preview = new FilePreview(taskId, signal);
  const files = new FilesCard(taskId, signal, preview);
  const answer = el("div", { class: "answer-text", id: "answer-text" });
  const answerCard = el("section", { class: "card", id: "answer", hidden: true }, el("h2", {}, "Answer"), answer);
  const streamState = el("span", { class: "stream-state", id: "stream-state", "data-state": "connecting" },
    STREAM_STATES.connecting);
  const timeline = el("ol", { class: "timeline", id: "timeline" });
  fill(view,
    el("a", { class: "back", href: "#/tasks" }, "← All tasks"),
    header.node,
    el("div", { class: "task-body" },
      el("section", { class: "panel timeline-panel" },
        el("div", { class: "card-head" }, el("h2", {}, "Timeline"), streamState),
        timeline),
      el("aside", { class: "task-side" }, answerCard, files.card, preview.card)));

  try {
    await header.refresh();
  } catch (error) {
    if (signal.aborted) return;
    const gone = error instanceof ApiError && error.status === 404;
    fill(view, el("a", { class: "back", href: "#/tasks" }, "← All tasks"),
      notice("error", gone ? `Task ${taskId} was not found (it may have been cleaned up).` : errorText(error)));
    return;
  }
  files.refresh();

  const setState = (state) => {
    streamState.dataset.state = state;
    streamState.textContent = STREAM_STATES[state];
  };
  const onEvent = (event) => {
    timeline.append(renderEvent(event));
    if (event.type === "task_start" || event.type === "task_end") header.refresh().catch(() => {});
    // Files appear as blocks run, and a follow-up's copies before it starts.
    if (event.type === "exec_result" || event.type === "task_end") files.refresh();
    if (event.type === "task_end") {
      const text = event.content && typeof event.content.answer === "string" ? event.content.answer : "";
      answerCard.hidden = !text;
      answer.textContent = text;
    }
  };
  try {
    await followEvents(apiPath("tasks", taskId, "events"), { onEvent, onState: setState, signal });
  } catch (error) {
    if (signal.aborted) return;
    setState("failed");
    const stopped = notice("error", `The event stream stopped: ${errorText(error)}`);
    timeline.append(el("li", { class: "event event-bad" }, stopped));
  }
}
