// The submit form: POST /tasks as JSON, or as multipart/form-data when files
// are chosen (the task as the part "task", each file as a part of its own;
// see README "Files in"). The optional fields are the API's own overrides.

import { apiJson } from "./api.js";
import { el, errorText, fill, formatBytes, notice } from "./dom.js";

// The provider names a task may ask for, as the OpenAPI document lists
// them (an enum on TaskSubmission.llm); none when it does not.
async function providerNames(signal) {
  try {
    const document = await apiJson("/openapi.json", { signal });
    const llm = document.components.schemas.TaskSubmission.properties.llm;
    for (const branch of llm.anyOf || [llm]) {
      if (Array.isArray(branch.enum)) return branch.enum.filter((name) => typeof name === "string");
    }
  } catch {
    // No document to read (it may need a token the person declined): the
    // field stays a plain text box.
  }
  return [];
}

// A key per filled-in form, so a submit sent twice (a double click, a retry
// after the connection dropped) starts one task, not two.
function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "ui-" + Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function field(label, input, hint) {
  return el("div", { class: "field" },
    el("label", { for: input.id }, label),
    input,
    hint ? el("p", { class: "hint" }, hint) : null);
}

class InvalidField extends Error {}

function optionalNumber(input, name, parse) {
  const raw = input.value.trim();
  if (!raw) return undefined;
  const number = parse(raw);
  if (!Number.isFinite(number)) throw new InvalidField(`${name} must be a number`);
  return number;
}

function readMetadata(input) {
  const raw = input.value.trim();
  if (!raw) return undefined;
  let value;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new InvalidField("Metadata must be JSON, e.g. {\"source\": \"dashboard\"}");
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidField("Metadata must be a JSON object");
  }
  return value;
}

export async function showSubmitForm({ view, signal, navigate }, params) {
  const instruction = el("textarea", {
    id: "instruction", name: "instruction", rows: 5, required: true,
    placeholder: "What should the agent do? e.g. Which city is the warmest in data.csv?",
  });
  const files = el("input", { id: "files", name: "files", type: "file", multiple: true });
  const chosen = el("ul", { class: "chosen-files", id: "chosen-files" });
  files.addEventListener("change", () => fill(chosen, Array.from(files.files, (file) => el("li", {},
    el("span", { class: "file-name" }, file.name),
    el("span", { class: "muted" }, ` ${formatBytes(file.size)}`)))));
  const llm = el("input", { id: "llm", name: "llm", list: "llm-names", autocomplete: "off",
                            placeholder: "server default" });
  const llmNames = el("datalist", { id: "llm-names" });
  const maxRounds = el("input", { id: "max-rounds", type: "number", min: 1, max: 1000, step: 1,
                                  placeholder: "server default" });
  const timeout = el("input", { id: "timeout-s", type: "number", min: 1, step: "any", placeholder: "server default" });
  const metadata = el("textarea", { id: "metadata", rows: 3, placeholder: "{\"source\": \"dashboard\"}" });
  const previous = el("input", { id: "previous-task-id", autocomplete: "off", placeholder: "task id",
                                 value: params.get("previous") || "" });
  const message = el("div", { class: "form-message", id: "form-message" });
  const submit = el("button", { type: "submit", id: "submit-task" }, "Submit task");
  let key = newIdempotencyKey();
  for (const input of [instruction, files, llm, maxRounds, timeout, metadata, previous]) {
    input.addEventListener("input", () => { key = newIdempotencyKey(); });
  }

  const form = el("form", { class: "panel submit-form", id: "submit-form", novalidate: true },
    el("h1", {}, previous.value ? "Follow up" : "New task"),
    field("Instruction", instruction),
    field("Files", files, "Saved in the task's folder before it starts; the model is told their names and sizes."),
    chosen,
    el("details", { class: "options", open: previous.value ? true : null },
      el("summary", {}, "Options"),
      el("div", { class: "option-grid" },
        field("Model provider", llm, "A provider name from llm.json."),
        field("Max rounds", maxRounds),
        field("Time limit (s)", timeout),
        field("Continue task", previous, "A finished task's id: this one starts with its conversation and files."),
        field("Metadata (JSON)", metadata, "Echoed back in the result."))),
    llmNames,
    el("div", { class: "form-actions" }, submit, message));
  fill(view, form);
  instruction.focus();
  providerNames(signal).then((names) => fill(llmNames, names.map((name) => el("option", { value: name }))));

  function taskBody() {
    if (!instruction.value.trim()) throw new InvalidField("Write an instruction first.");
    const body = { instruction: instruction.value };
    const values = {
      metadata: readMetadata(metadata),
      llm: llm.value.trim() || undefined,
      max_rounds: optionalNumber(maxRounds, "Max rounds", (raw) => Number.parseInt(raw, 10)),
      timeout_s: optionalNumber(timeout, "Time limit", Number.parseFloat),
      previous_task_id: previous.value.trim() || undefined,
    };
    for (const [name, value] of Object.entries(values)) if (value !== undefined) body[name] = value;
    return body;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = taskBody();
    } catch (error) {
      fill(message, notice("error", errorText(error)));
      return;
    }
    const options = { method: "POST", signal, headers: { "Idempotency-Key": key } };
    if (files.files.length) {
      const parts = new FormData();
      parts.append("task", JSON.stringify(body));
      for (const file of files.files) parts.append("file", file, file.name);
      options.body = parts; // the browser writes the multipart Content-Type and its boundary
    } else {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    submit.disabled = true;
    fill(message, el("span", { class: "muted" }, "Submitting…"));
    try {
      const answer = await apiJson("/tasks", options);
      navigate(`#/tasks/${encodeURIComponent(answer.task_id)}`);
    } catch (error) {
      if (!signal.aborted) fill(message, notice("error", `Not submitted: ${errorText(error)}`));
    } finally {
      submit.disabled = false;
    }
  });
}
