// Notices at the bottom right. Errors stay until dismissed: nothing the server says is dropped.
import { icon } from "./icons.js";

const MAX_TOASTS = 6;

export function toast(message, { kind = "info", timeout = kind === "error" ? 0 : 4000 } = {}) {
  const host = document.getElementById("toasts");
  const element = document.createElement("div");
  element.className = `toast ${kind}`;
  element.setAttribute("role", kind === "error" ? "alert" : "status");
  const text = document.createElement("div");
  text.className = "toast-text";
  text.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.title = "Dismiss";
  close.setAttribute("aria-label", "Dismiss");
  close.innerHTML = icon("close");
  close.addEventListener("click", () => element.remove());
  element.append(text, close);
  host.append(element);
  while (host.children.length > MAX_TOASTS) host.firstElementChild.remove();
  if (timeout) setTimeout(() => element.remove(), timeout);
  return element;
}

/** An API or network failure, in words: "<what we tried>: <what the server said>". */
export function showError(error, context) {
  console.error(context, error);
  // A 401 has already brought up the sign-in panel, which says why.
  if (error && error.signedOut) return null;
  const message = error && error.message ? error.message : String(error);
  return toast(context ? `${context}: ${message}` : message, { kind: "error" });
}
