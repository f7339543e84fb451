// The token dialog (in index.html) and the header's token button. The
// dialog opens by itself when the API answers 401 (see api.js), or when
// the person clicks the button to set, change or forget the token.

import { ApiError, tokenStore } from "./api.js";

export class TokenDialog {
  constructor(root = document) {
    this.dialog = root.getElementById("token-dialog");
    this.input = root.getElementById("token-input");
    this.reason = root.getElementById("token-reason");
    this.button = root.getElementById("token-button");
    this.waiting = []; // {resolve, reject} of each ask() still open
    this.onChange = () => {}; // a token set or forgotten by hand: the view reloads
    root.getElementById("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.close(this.input.value.trim());
    });
    root.getElementById("token-cancel").addEventListener("click", () => this.close(null));
    root.getElementById("token-clear").addEventListener("click", () => this.close(""));
    // Escape closes a modal dialog: take that as Cancel.
    this.dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      this.close(null);
    });
    this.button.addEventListener("click", () => this.show("Set the token this tab sends to the API."));
    window.addEventListener("tokenchange", () => this.showState());
    this.showState();
  }

  showState() {
    const token = tokenStore.get();
    this.button.textContent = token ? "Token: set" : "Token: none";
    this.button.classList.toggle("token-set", Boolean(token));
  }

  show(reason) {
    this.reason.textContent = reason;
    this.input.value = tokenStore.get();
    if (!this.dialog.open) this.dialog.showModal();
    this.input.focus();
  }

  // Resolves once a token is saved; rejects with a 401 ApiError when the
  // person cancels (the call that asked then fails, saying why).
  ask(reason) {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.show(reason);
    });
  }

  // token: the new one, "" to forget it, null to leave it as it was.
  close(token) {
    if (token !== null) tokenStore.set(token);
    this.dialog.close();
    const waiting = this.waiting;
    this.waiting = [];
    // The calls that asked try again by themselves; a change made by hand
    // reloads the view, so it shows what the new token may see.
    if (!waiting.length && token !== null) this.onChange();
    for (const { resolve, reject } of waiting) {
      if (token) resolve();
      else reject(new ApiError(401, "An API token is needed: use the Token button to enter it."));
    }
  }
}
