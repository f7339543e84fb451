// Every call the dashboard makes to the JSON API goes through apiFetch: it
// sends the token this tab keeps (if any) and, when the server answers 401,
// asks for a token once and tries again, so each view can simply call it.

const TOKEN_KEY = "aipython-agent-mode.token";

// sessionStorage, not localStorage: the token is gone when the tab closes,
// and other tabs (and other pages of this origin later on) never see it.
export const tokenStore = {
  get() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  set(token) {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    window.dispatchEvent(new Event("tokenchange"));
  },
};

// An answer that is not 2xx, with the API's own explanation ({"detail": ...}).
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

// askForToken(reason) resolves once a new token is stored, and rejects when
// the person declines; main.js installs the dialog that does it.
let askForToken = null;
let pendingAsk = null;

export function onUnauthorized(ask) {
  askForToken = ask;
}

function askOnce(reason) {
  // Several calls may get their 401 at once (a view loads a task and its
  // files together): they all wait for the same answer.
  if (!pendingAsk) {
    pendingAsk = askForToken(reason).finally(() => {
      pendingAsk = null;
    });
  }
  return pendingAsk;
}

async function errorFrom(response) {
  let detail = "";
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") detail = body.detail;
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  return new ApiError(response.status, detail || `${response.status} ${response.statusText}`);
}

// fetch() for the API: the response when it is 2xx, else an ApiError.
export async function apiFetch(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    const token = tokenStore.get();
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const response = await fetch(path, { ...options, headers, credentials: "omit" });
    if (response.ok) return response;
    if (response.status !== 401 || !askForToken) throw await errorFrom(response);
    const reason = token ? "The server refused this token. Enter the right one."
                         : "This server needs an API token.";
    await askOnce(reason); // rejects when declined, which ends the loop
  }
}

export async function apiJson(path, options = {}) {
  const response = await apiFetch(path, options);
  return response.json();
}

// Path segments as the API reads them: each one percent-encoded, so a file
// named "a b#?.txt" or a task id with odd characters stays one segment.
export function apiPath(...segments) {
  return "/" + segments.map((segment) => encodeURIComponent(segment)).join("/");
}

export function filePath(taskId, path) {
  return apiPath("tasks", taskId, "files") + "/" + path.split("/").map(encodeURIComponent).join("/");
}
