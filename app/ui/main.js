// The dashboard's entry point: the token dialog, the header, and a router
// over the address's fragment (#/tasks, #/tasks/{id}, #/new), so every view
// has an address of its own and the page is never reloaded to change view.

import { apiJson, onUnauthorized } from "./api.js";
import { el, errorText, fill, notice } from "./dom.js";
import { listHash, showTaskList } from "./list.js";
import { showSubmitForm } from "./submit.js";
import { showTask } from "./task.js";
import { TokenDialog } from "./token.js";

const ROUTES = [
  { pattern: /^\/tasks\/([^/]+)$/, nav: "tasks",
    show: (context, match) => showTask(context, decodeURIComponent(match[1])) },
  { pattern: /^\/new$/, nav: "new", show: (context, match, params) => showSubmitForm(context, params) },
  { pattern: /^\/(tasks)?$/, nav: "tasks", show: (context, match, params) => showTaskList(context, params) },
];

const view = document.getElementById("view");
let current = null; // the AbortController of the view shown: leaving it stops its streams and timers

function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function render() {
  current?.abort();
  current = new AbortController();
  const hash = location.hash.replace(/^#/, "") || "/tasks"; // /ui itself shows the list
  const cut = hash.indexOf("?");
  const path = cut === -1 ? hash : hash.slice(0, cut);
  const params = new URLSearchParams(cut === -1 ? "" : hash.slice(cut + 1));
  const route = ROUTES.find((candidate) => candidate.pattern.test(path));
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", Boolean(route) && link.dataset.nav === route.nav);
  }
  if (!route) {
    fill(view, notice("error", "No such page. ", el("a", { href: listHash({}) }, "See the tasks.")));
    return;
  }
  const context = { view, signal: current.signal, navigate };
  const { signal } = current;
  fill(view);
  route.show(context, path.match(route.pattern), params).catch((error) => {
    if (!signal.aborted) fill(view, notice("error", errorText(error)));
  });
}

async function showVersion() {
  try {
    const info = await apiJson("/");
    document.getElementById("version").textContent = `v${info.version}`;
  } catch {
    // Only a label: a view that needs the API says what went wrong.
  }
}

const tokenDialog = new TokenDialog();
tokenDialog.onChange = () => {
  render();
  showVersion();
};
onUnauthorized((reason) => tokenDialog.ask(reason));
window.addEventListener("hashchange", render);
render();
showVersion();
