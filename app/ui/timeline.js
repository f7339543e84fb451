// One task event as an entry of the task view's timeline. The content is
// the model's and its code's (text, code, output): shown as text, always.

import { el, formatClock, formatDuration } from "./dom.js";

const TITLES = {
  task_start: "Task started",
  llm_response: "Model replied",
  exec_start: "Running code",
  exec_result: "Code finished",
  error: "Error",
  task_end: "Task ended",
  callback: "Callback",
};

function asObject(value) {
  return value && typeof value === "object" && !Array.isArray(value) ? value : {};
}

function text(value) {
  return typeof value === "string" ? value : value === null || value === undefined ? "" : String(value);
}

// "a · b · c" from the parts that are there.
function facts(...parts) {
  const shown = parts.filter((part) => part !== null && part !== undefined && part !== "");
  return shown.length ? el("p", { class: "event-facts" }, shown.join(" · ")) : null;
}

function tokens(usage) {
  const { input_tokens: input, output_tokens: output } = asObject(usage);
  return typeof input === "number" && typeof output === "number" ? `${input} in / ${output} out tokens` : null;
}

function output(label, value, kind = "") {
  const shown = text(value);
  if (!shown) return null;
  return el("div", { class: `output ${kind}` },
    el("div", { class: "output-label" }, label),
    el("pre", { class: "output-text" }, shown));
}

function llmResponse(content) {
  const round = typeof content.round === "number" ? `round ${content.round}` : null;
  const message = text(content.message);
  return [
    facts(text(content.llm), round, tokens(content.usage)),
    message ? el("div", { class: "model-text" }, message) : null,
  ];
}

function execStart(content) {
  return [
    facts(text(content.block_name), text(content.language)),
    el("pre", { class: "code" }, el("code", {}, text(content.code))),
  ];
}

function execResult(content) {
  const result = asObject(content.result);
  const status = text(result.status) || "unknown";
  const exit = typeof result.returncode === "number" ? `exit code ${result.returncode}` : null;
  const ran = typeof result.duration_ms === "number" ? formatDuration(result.duration_ms) : null;
  const shown = [
    output("Notice", result.notice, "output-notice"),
    output("Output", result.stdout),
    output("Errors", result.stderr, "output-error"),
    output("Value", result.value),
  ].filter(Boolean);
  if (!shown.length) shown.push(output("Output", result.output) || el("p", { class: "muted" }, "(no output)"));
  return [
    el("p", { class: "event-facts" },
      el("span", { class: `result result-${status === "success" ? "good" : "bad"}` }, status),
      " · " + [text(content.block_name), exit, ran].filter(Boolean).join(" · ")),
    ...shown,
  ];
}

function error(content) {
  const exception = text(content.exception);
  return [
    el("p", { class: "error-message" }, text(content.message) || "(no message)"),
    exception ? el("details", {}, el("summary", {}, "Details"), el("pre", { class: "output-text" }, exception)) : null,
  ];
}

function taskEnd(content) {
  const ran = typeof content.duration_ms === "number" ? formatDuration(content.duration_ms) : null;
  const count = content.rounds;
  const rounds = typeof count === "number" ? `${count} round${count === 1 ? "" : "s"}` : null;
  return [
    facts(text(content.status), rounds, ran, tokens(content.usage)),
    content.error ? el("p", { class: "error-message" }, text(content.error)) : null,
  ];
}

function callback(content) {
  const answer = typeof content.status_code === "number" ? `HTTP ${content.status_code}` : null;
  const next = typeof content.next_attempt_in_s === "number" ? `next attempt in ${content.next_attempt_in_s} s` : null;
  return [
    facts(content.delivered ? "delivered" : "not delivered", `attempt ${text(content.attempt)}`, answer, next),
    el("p", { class: "muted" }, text(content.url)),
    content.error ? el("p", { class: "error-message" }, text(content.error)) : null,
  ];
}

function unknown(content) {
  return el("pre", { class: "output-text" }, JSON.stringify(content, null, 2));
}

const RENDERERS = {
  task_start: () => null,
  llm_response: llmResponse,
  exec_start: execStart,
  exec_result: execResult,
  error,
  task_end: taskEnd,
  callback,
};

function isBad(type, content) {
  if (type === "error") return true;
  if (type === "exec_result") return asObject(content.result).status !== "success";
  if (type === "task_end") return content.status === "error";
  if (type === "callback") return Boolean(content.error);
  return false;
}

export function renderEvent(event) {
  const type = text(event.type);
  const content = asObject(event.content);
  const render = Object.hasOwn(RENDERERS, type) ? RENDERERS[type] : unknown;
  const kind = type.replace(/[^a-z_]/g, "");
  return el("li", { class: `event event-${kind}${isBad(type, content) ? " event-bad" : ""}`, "data-type": type,
                    "data-seq": text(event.seq) },
    el("div", { class: "event-head" },
      el("span", { class: "event-seq" }, `#${text(event.seq)}`),
      el("span", { class: "event-title" }, Object.hasOwn(TITLES, type) ? TITLES[type] : type),
      el("time", { datetime: text(event.timestamp) }, formatClock(event.timestamp))),
    render(content));
}
