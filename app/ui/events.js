// A task's events, live, from GET /tasks/{id}/events (Server-Sent Events).
//
// EventSource cannot send an Authorization header, so the stream is read
// with fetch() and parsed here, following the text/event-stream rules of
// the HTML standard: lines end in CRLF, LF or CR; a blank line dispatches
// the event; "data" lines join with "\n"; ":" starts a comment (the
// server's keepalives); "id" is remembered, so a dropped stream resumes
// after the last event seen (the Last-Event-ID header), as the API allows.

import { ApiError, apiFetch } from "./api.js";

const LINE_END = /\r\n|\r|\n/g;

export class EventStreamParser {
  // onMessage({id, event, data}) for each event the stream completes.
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = "";
    this.data = [];
    this.eventType = "";
    this.lastEventId = "";
  }

  // Feed the next piece of text, cut anywhere (even inside a CRLF).
  push(text) {
    const buffer = this.buffer + text;
    let start = 0;
    LINE_END.lastIndex = 0;
    for (let match; (match = LINE_END.exec(buffer)) !== null;) {
      // A CR that ends the text may be the first half of a CRLF.
      if (match[0] === "\r" && match.index === buffer.length - 1) break;
      this.line(buffer.slice(start, match.index));
      start = LINE_END.lastIndex;
    }
    this.buffer = buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the server's keepalive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.eventType = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    // "retry" and unknown fields are ignored: reconnecting is paced below.
  }

  dispatch() {
    const message = { id: this.lastEventId, event: this.eventType || "message", data: this.data.join("\n") };
    const complete = this.data.length > 0;
    this.data = [];
    this.eventType = "";
    if (complete) this.onMessage(message);
  }
}

// The stream after `lastEventId` ("" for the whole log): a 2xx Response,
// else an ApiError (apiFetch asks for a token on a 401).
function openStream(url, lastEventId, signal) {
  const headers = { Accept: "text/event-stream" };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  return apiFetch(url, { headers, signal, cache: "no-store" });
}

async function readStream(body, parser) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(decoder.decode(value, { stream: true }));
  }
  parser.push(decoder.decode());
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

// Waits between reconnects, growing while they keep failing.
const RETRY_DELAYS_MS = [500, 1000, 2000, 5000];

// Follow a task's events until the stream is complete: the server ends it
// after task_end (and the callback's last attempt, if any). A stream that
// drops before that is opened again after the last event seen, so nothing
// is missed or shown twice. Refusals that another try cannot fix (the task
// is gone, a bad request, a token declined) are thrown.
//
// onEvent(event): each event, parsed (seq, type, timestamp, content).
// onState(state): "live", "reconnecting" or "ended", for the page to show.
// open(url, lastEventId, signal): how a stream is opened (tests replace it).
export async function followEvents(url, { onEvent, onState = () => {}, signal, open = openStream,
                                          retryDelaysMs = RETRY_DELAYS_MS } = {}) {
  let lastEventId = "";
  let ended = false;
  let failures = 0;
  while (!signal?.aborted) {
    try {
      const response = await open(url, lastEventId, signal);
      onState("live");
      const parser = new EventStreamParser((message) => {
        lastEventId = message.id || lastEventId;
        failures = 0;
        const event = JSON.parse(message.data);
        if (event.type === "task_end") ended = true;
        onEvent(event);
      });
      await readStream(response.body, parser);
      if (ended) {
        onState("ended");
        return;
      }
    } catch (error) {
      if (signal?.aborted) return;
      const lasting = error instanceof ApiError && error.status < 500;
      if (lasting) throw error;
    }
    onState("reconnecting");
    await pause(retryDelaysMs[Math.min(failures, retryDelaysMs.length - 1)], signal);
    failures += 1;
  }
}
