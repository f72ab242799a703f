// The Secrets view: the workflow secrets' names (editors and admins), and for admins the
// actions to add, replace and delete them. A value is typed into a password field, sent in one
// request body and kept nowhere else; the server never sends one back, so none is ever shown.
import * as api from "./api.js";
import { paragraphs, sentence, showDialog } from "./dialogs.js";
import { h, plural, time } from "./dom.js";
import { icon } from "./icons.js";
import { showError, toast } from "./toasts.js";

// The server's rules (slipway/workflow_secrets.py), checked here first for a quicker answer.
const NAME = /^[A-Z][A-Z0-9_]{0,62}$/;
const MAX_VALUE_BYTES = 24 * 1024;
const encoder = new TextEncoder();

function nameProblem(name) {
  if (!name) return "Enter a name.";
  if (!NAME.test(name)) {
    return "A name is like an environment variable: an uppercase letter, then uppercase letters, digits or underscores (API_KEY), at most 63.";
  }
  return "";
}

function valueProblem(value) {
  if (!value) return "Enter the value.";
  const size = encoder.encode(value).length;
  if (size > MAX_VALUE_BYTES) return `The value is ${size} bytes; the limit is ${MAX_VALUE_BYTES} bytes.`;
  return "";
}

function field(label, input) {
  return h("label", { className: "dialog-field" }, h("span", {}, label), input);
}

/** Ask for a value (and a name, when `name` is not given) and store it; resolves to the answer or null. */
async function setDialog(name, existing) {
  const nameInput = h("input", {
    type: "text",
    id: "secret-name",
    name: "secret-name",
    placeholder: "API_KEY",
    spellcheck: false,
    autocomplete: "off",
    autocapitalize: "characters",
  });
  const valueInput = h("input", {
    type: "password",
    id: "secret-value",
    name: "secret-value",
    spellcheck: false,
    autocomplete: "new-password",
    autocapitalize: "off",
    // Password managers: this is a workflow's credential, not a password for this site.
    "data-lpignore": "true",
    "data-1p-ignore": "true",
  });
  nameInput.addEventListener("input", () => {
    const start = nameInput.selectionStart;
    nameInput.value = nameInput.value.toUpperCase();
    nameInput.setSelectionRange(start, start);
  });
  const replacing = Boolean(name) && existing.has(name);
  const message = paragraphs(
    name
      ? sentence(replacing ? "Replace the value of " : "Set ", { strong: name }, replacing ? "? The old value is overwritten; runs that start from now on read the new one." : ".")
      : sentence("Workflows that declare the name read the value as ", { strong: "ctx.secrets[NAME]" }, "."),
    name ? null : field("Name", nameInput),
    field("Value (never shown again, not even to admins)", valueInput),
  );
  const result = await showDialog({
    title: replacing ? `Replace ${name}` : "Add a secret",
    message,
    className: "secret-dialog",
    onOpen: (dialog) => {
      (name ? valueInput : nameInput).focus();
      dialog.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && event.target instanceof HTMLInputElement) {
          event.preventDefault();
          dialog.querySelector('button[data-value="save"]')?.click();
        }
      });
    },
    buttons: [
      { label: "Cancel", value: "cancel" },
      {
        label: replacing ? "Replace" : "Save",
        value: "save",
        kind: "primary",
        run: async () => {
          const target = name || nameInput.value.trim();
          const problem = nameProblem(target) || valueProblem(valueInput.value);
          if (problem) throw new Error(problem);
          if (!name && existing.has(target)) {
            throw new Error(`${target} already exists. Use its Replace button to change its value.`);
          }
          return api.putSecret(target, valueInput.value);
        },
      },
    ],
  });
  valueInput.value = ""; // the dialog is gone; drop the last reference to the text
  return result ? result.result : null;
}

/**
 * @param {{isAdmin: () => boolean, isEditor: () => boolean}} roles
 */
export function createSecretsView({ isAdmin, isEditor }) {
  const host = document.getElementById("secrets-body");
  const addButton = document.getElementById("secrets-add");
  let secrets = null;
  let failure = null;
  let running = null;

  function row(secret) {
    const actions = h("td", { className: "actions" });
    if (isAdmin()) {
      const replace = h("button", { type: "button", className: "small", title: `Set a new value for ${secret.name}` }, "Replace…");
      replace.dataset.action = "replace";
      replace.addEventListener("click", () => replace_(secret.name));
      const remove = h("button", { type: "button", className: "small danger", title: `Delete ${secret.name}` });
      remove.dataset.action = "delete";
      remove.innerHTML = icon("trash");
      remove.append("Delete…");
      remove.addEventListener("click", () => delete_(secret.name));
      actions.append(replace, remove);
    }
    return h(
      "tr",
      { dataset: { secret: secret.name } },
      h("td", {}, h("code", {}, secret.name)),
      h("td", {}, secret.updated ? time(secret.updated) : h("span", { className: "muted" }, "—")),
      actions,
    );
  }

  function render() {
    const admin = isAdmin();
    addButton.hidden = !admin;
    const note = admin
      ? null
      : h("p", { className: "role-note", id: "secrets-role-note" }, "Only an admin can add, replace or delete secrets; ask one to set a value your workflow needs.");
    if (failure) {
      const words = failure.status === 403 ? "Secret names are shown to editors and admins." : `The secrets could not be read: ${failure.message}`;
      host.replaceChildren(h("p", { className: failure.status === 403 ? "role-note" : "failed", id: "secrets-note" }, words));
      return;
    }
    if (!secrets) {
      host.replaceChildren(h("p", { id: "secrets-note" }, "Reading the secrets…"));
      return;
    }
    if (!secrets.length) {
      host.replaceChildren(...[h("p", { id: "secrets-note" }, admin ? "No secrets yet. Add one for a workflow to use." : "No secrets yet."), note].filter(Boolean));
      return;
    }
    const table = h(
      "table",
      { id: "secrets-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Updated"), h("th", {}, ""))),
      h("tbody", {}, secrets.map(row)),
    );
    host.replaceChildren(...[h("p", { id: "secrets-note" }, plural(secrets.length, "secret")), table, note].filter(Boolean));
  }

  async function refresh() {
    if (running) return running;
    running = (async () => {
      if (!isEditor()) {
        failure = { status: 403, message: "" };
        render();
        return;
      }
      try {
        secrets = (await api.getSecrets()).secrets || [];
        failure = null;
      } catch (error) {
        if (error.signedOut) return;
        failure = error;
      }
      render();
    })().finally(() => {
      running = null;
    });
    return running;
  }

  const names = () => new Set((secrets || []).map((s) => s.name));

  async function add_() {
    const answer = await setDialog("", names());
    if (!answer) return;
    toast(`Secret ${answer.name} saved. Workflows that declare it read it as ctx.secrets["${answer.name}"].`);
    await refresh();
  }

  async function replace_(name) {
    const answer = await setDialog(name, names());
    if (!answer) return;
    toast(`The value of ${answer.name} was replaced.`);
    await refresh();
  }

  async function delete_(name) {
    const result = await showDialog({
      title: "Delete secret",
      message: paragraphs(
        sentence("Delete the secret ", { strong: name }, "?"),
        sentence("Runs that start from now on get no value for it. This cannot be undone."),
      ),
      buttons: [
        { label: "Cancel", value: "cancel", focus: true },
        { label: "Delete", value: "delete", kind: "danger", run: () => api.deleteSecret(name) },
      ],
    });
    if (!result) return;
    toast(`Secret ${name} deleted.`);
    await refresh();
  }

  addButton.addEventListener("click", () => add_().catch((error) => showError(error, "Add a secret")));
  document.getElementById("secrets-refresh").addEventListener("click", () => refresh());
  return {
    refresh,
    render,
    setVisible(visible) {
      if (visible) refresh();
    },
  };
}
