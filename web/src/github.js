// The GitHub view: whether a repository manages the workspace, the connect / sync / disconnect
// actions (admin only), and the sync history. Connecting is two steps: "Check" asks the server
// what connecting would add, overwrite and delete (a dry run), and only then "Connect and sync"
// is offered, after a button to download the workspace as a zip. The token is read from its
// field for those two requests and kept nowhere else: not in storage, not in the console.
import * as api from "./api.js";
import { holdDialogOpen, paragraphs, sentence, showDialog } from "./dialogs.js";
import { absoluteTime, formatDuration, h, parseTime, plural, relativeTime, time } from "./dom.js";
import { icon } from "./icons.js";
import { formatBytes } from "./paths.js";
import { showError, toast } from "./toasts.js";

const HISTORY_LIMIT = 50;
const POLL_MS = 15000;

// --- small helpers --------------------------------------------------------------------------

/** A short commit id for display; the whole one goes in the title. */
export const shortSha = (sha) => (sha ? String(sha).slice(0, 7) : "");

// What each refusal of the GitHub routes means for the person at the dialog. The server's own
// message follows, since it names the repository, branch or permission involved.
const ERROR_WORDS = {
  github_auth_failed: "GitHub did not accept the token. Check that it was copied whole and has not expired or been revoked.",
  repository_not_found: "GitHub knows no such repository, or the token cannot see it. Check the owner/name and that the token has access to this repository.",
  permission_missing: "The token lacks a permission Slipway needs: read access to the repository's contents (and to its webhooks, for Slipway to add the webhook itself).",
  branch_not_found: "The repository has no such branch. Check the branch name (it is case-sensitive).",
  already_connected: "The workspace is already connected to a repository. Disconnect it first.",
  not_connected: "The workspace is not connected to a repository.",
  invalid_request: "The request was refused. Check the fields.",
  github_unavailable: "GitHub could not be reached or answered with an error. Try again in a moment.",
  fetch_failed: "The repository could not be fetched from GitHub. Try again in a moment.",
  tree_refused: "The repository's files cannot become the workspace.",
  sync_failed: "The first sync failed, so the connection was undone and the workspace left as it was.",
  github_error: "GitHub answered with an error.",
  forbidden: "Only an admin may change the GitHub connection.",
  network: "The server could not be reached.",
};

/** An API failure as a sentence for the GitHub dialogs: what it means, then what the server said. */
export function describeGithubError(error) {
  const message = error && error.message ? error.message : String(error);
  const code = error && error.code;
  const words = ERROR_WORDS[code] || (error && error.status === 403 ? ERROR_WORDS.forbidden : null);
  if (code === "network") return message;
  if (!words) return message;
  return message && message !== words ? `${words} (${message})` : words;
}

// --- copying to the clipboard ---------------------------------------------------------------

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Clipboard API unavailable (no permission, not a secure context): the old way.
    const area = h("textarea", { value: text, readOnly: true, className: "copy-buffer" });
    document.body.append(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    area.remove();
    return copied;
  }
}

/** A read-only value with a Copy button beside it. */
function copyField(label, value, { secret = false } = {}) {
  const input = h("input", { type: "text", value, readOnly: true, spellcheck: false, className: secret ? "secret" : "" });
  input.addEventListener("focus", () => input.select());
  const button = h("button", { type: "button", className: "copy", title: `Copy the ${label.toLowerCase()}` }, "Copy");
  button.setAttribute("aria-label", `Copy ${label.toLowerCase()}`);
  button.addEventListener("click", async () => {
    const copied = await copyText(value);
    input.select();
    button.textContent = copied ? "Copied" : "Select and copy";
    setTimeout(() => (button.textContent = "Copy"), 2000);
  });
  return h("div", { className: "copy-field" }, h("span", { className: "copy-label" }, label), h("div", { className: "copy-row" }, input, button));
}

// --- the connect dialog ---------------------------------------------------------------------

function textField(label, { type = "text", value = "", placeholder = "", name }) {
  const input = h("input", {
    type,
    value,
    placeholder,
    name,
    spellcheck: false,
    autocomplete: type === "password" ? "new-password" : "off",
    autocapitalize: "off",
    // Password managers: this is a token for one request, not a site password to save.
    "data-lpignore": "true",
    "data-1p-ignore": "true",
  });
  const wrapper = h("label", { className: "dialog-field" }, h("span", {}, label), input);
  return { wrapper, input };
}

function pathList(title, paths, total, className) {
  if (!total) return null;
  const items = (paths || []).map((path) => h("li", {}, path));
  const more = total > items.length ? h("li", { className: "more" }, `… and ${total - items.length} more`) : null;
  return h(
    "details",
    { className: `path-list ${className}` },
    h("summary", {}, `${title} (${total})`),
    h("ul", {}, items, more),
  );
}

function reviewBody(check) {
  const overwrite = check.would_overwrite || 0;
  const remove = check.would_delete || 0;
  const count = (n, label, kind) =>
    h("li", { className: `count ${kind}`, dataset: { count: kind } }, h("strong", {}, String(n)), ` ${label}`);
  const losing = overwrite + remove > 0;
  const note = losing
    ? `Connecting overwrites ${plural(overwrite, "file")} and deletes ${plural(remove, "file")} of the workspace (listed above), and the editor becomes read-only. Download the workspace as a zip first to keep a copy of them.`
    : "Nothing in the workspace is overwritten or deleted, and the editor becomes read-only. You can still download the workspace as a zip first.";
  const download = h(
    "a",
    { className: "button", href: api.archiveUrl, download: "", id: "github-backup-download" },
  );
  download.innerHTML = icon("download");
  download.append("Download the workspace as zip first");
  download.addEventListener("click", () => {
    download.classList.add("done");
  });
  return h(
    "div",
    { className: "github-review" },
    h(
      "p",
      {},
      "The branch ",
      h("strong", {}, check.branch),
      " of ",
      h("strong", {}, check.repository),
      " at commit ",
      h("code", { title: check.commit || "" }, shortSha(check.commit)),
      ". Connecting makes the workspace equal to it:",
    ),
    h(
      "ul",
      { className: "github-counts" },
      count(check.would_add || 0, "to add", "add"),
      count(overwrite, "to overwrite", "overwrite"),
      count(remove, "to delete", "delete"),
      count(check.unchanged || 0, "unchanged", "unchanged"),
    ),
    pathList("Files overwritten", check.overwrite_paths, overwrite, "overwrite"),
    pathList("Files deleted", check.delete_paths, remove, "delete"),
    h("div", { className: `github-backup${losing ? " losing" : ""}` }, h("p", {}, note), download),
  );
}

function webhookBody(answer) {
  const hook = answer.webhook || {};
  return h(
    "div",
    { className: "github-webhook" },
    h(
      "p",
      {},
      "Connected to ",
      h("strong", {}, answer.repository),
      " (",
      h("strong", {}, answer.branch),
      "). Slipway could not add the webhook itself",
      hook.message ? ` (${hook.message})` : " (the token may not manage webhooks)",
      ", so GitHub will not tell Slipway about pushes until you add the webhook yourself.",
    ),
    h(
      "ol",
      { className: "steps" },
      h("li", {}, "In the repository on GitHub open Settings → Webhooks → Add webhook."),
      h("li", {}, "Payload URL: the URL below."),
      h("li", {}, "Content type: ", h("code", {}, "application/json"), "."),
      h("li", {}, "Secret: the secret below."),
      h("li", {}, "Which events: “Just the push event”. Keep it active and add it."),
    ),
    hook.url
      ? copyField("Payload URL", hook.url)
      : h(
          "p",
          { className: "failed" },
          "Slipway does not know its public address (SLIPWAY_PUBLIC_BASE_URL): the payload URL is https://<the app's address>/api/github/webhook.",
        ),
    copyField("Secret", hook.secret || "", { secret: true }),
    h(
      "p",
      { className: "once", role: "note" },
      "The secret is shown only once: copy it now. To get a new one, disconnect and connect again.",
    ),
  );
}

/** The two-step connect dialog; resolves to the connect answer, or null when cancelled. */
function connectDialog() {
  return new Promise((resolve) => {
    const release = holdDialogOpen();
    const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
    const dialog = h("dialog", { className: "dialog github-connect", "aria-labelledby": titleId });
    const title = h("h2", { id: titleId }, "Connect a GitHub repository");
    const intro = h(
      "div",
      { className: "dialog-message" },
      h(
        "p",
        {},
        "The branch becomes the source of the workspace: connecting replaces the workspace with the branch, every push to it is synced here, and the editor is read-only while connected.",
      ),
    );
    const repository = textField("Repository", { placeholder: "owner/name or https://github.com/owner/name", name: "repository" });
    const branch = textField("Branch", { value: "main", name: "branch" });
    const token = textField("Personal access token", { type: "password", placeholder: "github_pat_…", name: "token" });
    const hint = h(
      "p",
      { className: "field-hint" },
      "Needs read access to the repository's contents, and to its webhooks for Slipway to add the push webhook itself. The server keeps it in its secret store; this page does not.",
    );
    const form = h("div", { className: "github-form" }, repository.wrapper, branch.wrapper, token.wrapper, hint);
    const body = h("div", { className: "github-step" });
    const error = h("p", { className: "dialog-error", role: "alert", hidden: true });
    const footer = h("div", { className: "dialog-buttons" });
    dialog.append(title, intro, form, body, error, footer);

    let step = "form";
    let busy = false;
    let settled = false;
    let checked = null; // the fields the dry run was made with

    const fields = () => ({
      repository: repository.input.value.trim(),
      branch: branch.input.value.trim(),
      token: token.input.value.trim(),
    });

    function finish(result) {
      if (settled) return;
      settled = true;
      token.input.value = "";
      release();
      dialog.close();
      dialog.remove();
      resolve(result);
    }

    function setError(text) {
      error.textContent = text;
      error.hidden = !text;
    }

    function setButtons(specs) {
      footer.replaceChildren(
        ...specs.map((spec) => {
          const button = h("button", { type: "button", className: spec.kind || "", dataset: { value: spec.value } }, spec.label);
          button.addEventListener("click", () => spec.action());
          return button;
        }),
      );
      return [...footer.querySelectorAll("button")];
    }

    async function work(label, button, task) {
      if (busy) return;
      busy = true;
      setError("");
      const buttons = [...footer.querySelectorAll("button")];
      const text = button.textContent;
      for (const b of buttons) b.disabled = true;
      for (const input of form.querySelectorAll("input")) input.disabled = true;
      button.textContent = label;
      dialog.classList.add("busy");
      try {
        await task();
      } catch (failure) {
        setError(describeGithubError(failure));
        button.textContent = text;
      } finally {
        busy = false;
        dialog.classList.remove("busy");
        for (const b of footer.querySelectorAll("button")) b.disabled = false;
        for (const input of form.querySelectorAll("input")) input.disabled = step !== "form";
      }
    }

    function showForm() {
      step = "form";
      checked = null;
      form.hidden = false;
      intro.hidden = false;
      hint.hidden = false;
      body.replaceChildren();
      for (const input of form.querySelectorAll("input")) {
        input.disabled = false;
        input.readOnly = false;
      }
      const [, check] = setButtons([
        { label: "Cancel", value: "cancel", action: () => finish(null) },
        { label: "Check", value: "check", kind: "primary", action: () => runCheck(check) },
      ]);
      (repository.input.value ? token.input : repository.input).focus();
    }

    function runCheck(button) {
      const values = fields();
      if (!values.repository) return setError("Enter the repository, as owner/name or its URL.");
      if (!values.branch) return setError("Enter the branch to follow.");
      if (!values.token) return setError("Enter a personal access token that can read the repository.");
      return work("Checking…", button, async () => {
        const answer = await api.connectGithub({ ...values, dryRun: true });
        checked = values;
        showReview(answer);
      });
    }

    function showReview(check) {
      step = "review";
      intro.hidden = true;
      hint.hidden = true;
      for (const input of form.querySelectorAll("input")) input.disabled = true;
      body.replaceChildren(reviewBody(check));
      const losing = (check.would_overwrite || 0) + (check.would_delete || 0) > 0;
      const buttons = setButtons([
        { label: "Cancel", value: "cancel", action: () => finish(null) },
        { label: "Change", value: "back", action: () => showForm() },
        { label: "Connect and sync", value: "connect", kind: losing ? "danger" : "primary", action: () => runConnect(buttons[2]) },
      ]);
      buttons[2].focus();
    }

    function runConnect(button) {
      return work("Connecting and syncing…", button, async () => {
        const answer = await api.connectGithub({ ...checked, dryRun: false });
        token.input.value = "";
        if (answer.webhook && answer.webhook.managed === false && answer.webhook.secret) showWebhook(answer);
        else finish(answer);
      });
    }

    function showWebhook(answer) {
      step = "webhook";
      title.textContent = "Add the webhook in GitHub";
      form.hidden = true;
      intro.hidden = true;
      body.replaceChildren(webhookBody(answer));
      const [done] = setButtons([
        { label: "I have added the webhook", value: "done", kind: "primary", action: () => finish(answer) },
      ]);
      done.focus();
    }

    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      // The secret is shown once: closing that step takes the explicit button.
      if (!busy && step !== "webhook") finish(null);
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && step === "form") {
        event.preventDefault();
        footer.querySelector('button[data-value="check"]')?.click();
      }
    });

    document.body.append(dialog);
    dialog.showModal();
    showForm();
  });
}

// --- the view -------------------------------------------------------------------------------

function syncSummary(entry) {
  if (!entry) return "";
  const parts = [`+${entry.added ?? 0}`, `~${entry.changed ?? 0}`, `−${entry.deleted ?? 0}`];
  return parts.join(" ");
}

function resultBadge(result) {
  const kind = result === "succeeded" ? "ok" : result === "failed" ? "failed" : "skipped";
  return h("span", { className: `badge ${kind}` }, result || "unknown");
}

function commitRange(entry) {
  const after = h("code", { title: entry.after || "" }, shortSha(entry.after) || "—");
  if (!entry.before || entry.before === entry.after) return h("span", { className: "commits" }, after);
  return h("span", { className: "commits" }, h("code", { title: entry.before }, shortSha(entry.before)), " → ", after);
}

function historyRow(entry) {
  const warnings = entry.warnings || [];
  const failed = entry.result === "failed";
  const details = h("td", { className: "details" });
  if (entry.message) details.append(h("div", { className: failed ? "message failed" : "message" }, entry.message));
  if (warnings.length) {
    details.append(
      h(
        "details",
        { className: "warnings" },
        h("summary", {}, plural(warnings.length, "warning")),
        h("ul", {}, warnings.map((w) => h("li", {}, w))),
      ),
    );
  }
  const trigger = h("td", { title: entry.delivery ? `delivery ${entry.delivery}` : "" }, entry.trigger || "");
  return h(
    "tr",
    { className: `sync ${entry.result || ""}`, dataset: { result: entry.result || "", trigger: entry.trigger || "" } },
    h("td", { className: "when" }, time(entry.at)),
    trigger,
    h("td", {}, resultBadge(entry.result)),
    h("td", {}, commitRange(entry)),
    h("td", { className: "changes", title: `${entry.added ?? 0} added, ${entry.changed ?? 0} changed, ${entry.deleted ?? 0} deleted` }, syncSummary(entry)),
    h("td", { className: "num" }, entry.bytes == null ? "" : formatBytes(entry.bytes)),
    h("td", { className: "num" }, formatDuration(entry.duration_ms)),
    details,
  );
}

function definitions(pairs) {
  return h(
    "dl",
    { className: "github-facts" },
    pairs.filter(Boolean).flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
  );
}

function webhookFact(webhook) {
  if (!webhook) return "none";
  if (webhook.managed) {
    return h("span", {}, `Managed by Slipway${webhook.id != null ? ` (id ${webhook.id})` : ""} · `, h("code", {}, webhook.url || ""));
  }
  return h("span", {}, "Added by hand in GitHub (Slipway does not manage it) · ", h("code", {}, webhook.url || ""));
}

function lastSyncFact(entry) {
  if (!entry) return "none yet";
  return h(
    "span",
    { className: "last-sync" },
    resultBadge(entry.result),
    " ",
    time(entry.at),
    entry.after ? [" · ", h("code", { title: entry.after }, shortSha(entry.after))] : null,
    entry.result === "failed" && entry.message ? [" · ", h("span", { className: "failed" }, entry.message)] : null,
  );
}

function snapshotsFact(snapshots) {
  if (!snapshots || !snapshots.length) return "none";
  const sorted = [...snapshots].sort((a, b) => String(b.snapshot).localeCompare(String(a.snapshot)));
  return h(
    "details",
    { className: "snapshots" },
    h("summary", {}, `${plural(sorted.length, "snapshot")}, the latest `, time(sorted[0].snapshot)),
    h("ul", {}, sorted.map((s) => h("li", {}, h("code", {}, s.snapshot), " · ", absoluteTime(s.snapshot)))),
  );
}

/**
 * @param {{isAdmin: () => boolean, onWorkspaceChanged: () => Promise<unknown>}} options
 */
export function createGithubView({ isAdmin, onWorkspaceChanged }) {
  const statusHost = document.getElementById("github-status");
  const historyTable = document.getElementById("github-history");
  const historyNote = document.getElementById("github-history-note");
  let status = null;
  let statusError = null;
  let entries = null;
  let lastHistoryJson = "";
  let running = null;
  let visible = false;
  let timer = null;
  let waitingForSync = null;

  function render() {
    statusHost.replaceChildren(renderStatus());
  }

  function renderStatus() {
    if (statusError) {
      return h("div", { className: "github-card error", role: "alert" }, `The GitHub connection could not be read: ${statusError}`);
    }
    if (!status) return h("div", { className: "github-card" }, "Reading the connection…");
    const admin = isAdmin();
    if (!status.connected) {
      const card = h(
        "div",
        { className: "github-card", dataset: { connected: "false" } },
        h("div", { className: "github-card-head" }, h("span", { className: "dot off" }), h("strong", {}, "Not connected"), " — the workspace is edited in the browser."),
        h(
          "p",
          {},
          "Connect a GitHub repository to make one of its branches the source of the workspace: every push to the branch is synced here, and the editor becomes read-only.",
        ),
      );
      if (admin) {
        const connect = h("button", { type: "button", className: "primary", id: "github-connect" }, "Connect a repository…");
        connect.addEventListener("click", connect_);
        card.append(h("div", { className: "github-actions" }, connect));
      } else {
        card.append(h("p", { className: "role-note" }, "Only an admin can connect a repository."));
      }
      return card;
    }
    const card = h(
      "div",
      { className: "github-card connected", dataset: { connected: "true" } },
      h(
        "div",
        { className: "github-card-head" },
        h("span", { className: "dot on" }),
        "Connected to ",
        h("strong", { id: "github-repository" }, status.repository),
        " · branch ",
        h("strong", { id: "github-branch" }, status.branch),
      ),
      definitions([
        ["Last sync", lastSyncFact(status.last_sync)],
        ["Webhook", webhookFact(status.webhook)],
        ["Connected", h("span", {}, time(status.connected_at), status.connected_by ? ` by ${status.connected_by}` : "")],
        ["Snapshots", snapshotsFact(status.snapshots)],
      ]),
    );
    if (admin) {
      const sync = h("button", { type: "button", id: "github-sync", className: "primary" });
      sync.innerHTML = icon("refresh");
      sync.append("Sync now");
      sync.addEventListener("click", () => syncNow(sync));
      const disconnect = h("button", { type: "button", id: "github-disconnect" }, "Disconnect…");
      disconnect.addEventListener("click", disconnect_);
      card.append(h("div", { className: "github-actions" }, sync, disconnect));
    } else {
      card.append(h("p", { className: "role-note" }, "Only an admin can sync or disconnect the repository."));
    }
    return card;
  }

  function renderHistory(error) {
    const tbody = historyTable.querySelector("tbody");
    if (error) {
      historyNote.textContent = `The sync history could not be read: ${error}`;
      historyNote.className = "failed";
      historyNote.hidden = false;
      return;
    }
    const json = JSON.stringify(entries);
    historyNote.className = "";
    if (!entries || !entries.length) {
      historyNote.textContent = "No syncs yet.";
      historyNote.hidden = false;
      historyTable.hidden = true;
      lastHistoryJson = json;
      return;
    }
    historyNote.hidden = true;
    historyTable.hidden = false;
    // Re-render only when something changed, so an expanded list of warnings stays open.
    if (json === lastHistoryJson) {
      for (const t of tbody.querySelectorAll("time")) t.textContent = relativeTime(t.dateTime);
      return;
    }
    lastHistoryJson = json;
    tbody.replaceChildren(...entries.map(historyRow));
  }

  async function refresh() {
    if (running) return running;
    running = (async () => {
      const [got, syncs] = await Promise.allSettled([api.getGithub(), api.getGithubSyncs(HISTORY_LIMIT)]);
      if (got.status === "fulfilled") {
        status = got.value;
        statusError = null;
      } else {
        statusError = got.reason?.message || String(got.reason);
      }
      render();
      if (syncs.status === "fulfilled") {
        entries = syncs.value.entries || [];
        renderHistory();
      } else {
        renderHistory(syncs.reason?.message || String(syncs.reason));
      }
      if (waitingForSync && entries) checkQueuedSync();
    })().finally(() => {
      running = null;
    });
    return running;
  }

  async function connect_() {
    const answer = await connectDialog();
    if (!answer) {
      refresh();
      return;
    }
    const sync = answer.sync;
    const what = `${answer.repository} (${answer.branch})`;
    if (sync && sync.result === "failed") {
      toast(`Connected to ${what}, but the first sync failed: ${sync.message || "see the sync history"}`, { kind: "error" });
    } else {
      const counts = sync ? ` — ${sync.added ?? 0} added, ${sync.changed ?? 0} changed, ${sync.deleted ?? 0} deleted` : "";
      toast(`Connected to ${what}${counts}. Pushes to ${answer.branch} now sync the workspace.`);
    }
    await Promise.all([onWorkspaceChanged(), refresh()]);
  }

  async function disconnect_() {
    const repo = status && status.connected ? `${status.repository} (${status.branch})` : "the repository";
    const managed = Boolean(status && status.webhook && status.webhook.managed);
    const result = await showDialog({
      title: "Disconnect GitHub",
      message: paragraphs(
        sentence("Disconnect the workspace from ", { strong: repo }, "?"),
        sentence(
          "The files stay as they are; editing in the browser becomes possible again; ",
          managed ? "the webhook is removed from GitHub." : "the webhook was added by hand, so remove it in the repository settings.",
        ),
        sentence("Pushes to the branch are no longer synced until you connect again."),
      ),
      buttons: [
        { label: "Cancel", value: "cancel", focus: true },
        {
          label: "Disconnect",
          value: "disconnect",
          kind: "danger",
          run: async () => {
            try {
              return await api.disconnectGithub();
            } catch (error) {
              throw new Error(describeGithubError(error));
            }
          },
        },
      ],
    });
    if (!result) return;
    const answer = result.result || {};
    if (answer.message || (managed && answer.webhook_removed === false)) {
      const why = answer.message || "the webhook could not be removed from GitHub; remove it in the repository settings";
      toast(`Disconnected from ${repo}; the files stay and editing is possible again. But ${why}.`, { kind: "error" });
    } else {
      toast(`Disconnected from ${repo}. The files stay; editing is possible again.`);
    }
    await Promise.all([onWorkspaceChanged(), refresh()]);
  }

  async function syncNow(button) {
    button.disabled = true;
    try {
      await api.syncGithub();
      waitingForSync = { since: entries && entries[0] ? entries[0].at : null, until: Date.now() + 120000 };
      toast("Sync queued: the branch is fetched and the workspace updated; the history shows the result.");
      schedule(2000);
    } catch (error) {
      showError(new Error(describeGithubError(error)), "Sync now");
    } finally {
      button.disabled = false;
    }
  }

  /** After "Sync now": when a newer entry appears, say how it went and reload the tree. */
  function checkQueuedSync() {
    const newest = entries[0];
    if (newest && newest.at !== waitingForSync.since && (parseTime(newest.at)?.getTime() ?? 0) >= (parseTime(waitingForSync.since)?.getTime() ?? 0)) {
      waitingForSync = null;
      if (newest.result === "failed") toast(`The sync failed: ${newest.message || "see the sync history"}`, { kind: "error" });
      else toast(`Synced: ${newest.added ?? 0} added, ${newest.changed ?? 0} changed, ${newest.deleted ?? 0} deleted.`, { timeout: 3000 });
      onWorkspaceChanged();
    } else if (Date.now() > waitingForSync.until) {
      waitingForSync = null;
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!visible && !waitingForSync) return;
      await refresh();
      schedule(waitingForSync ? 2000 : POLL_MS);
    }, delay);
  }

  function setVisible(value) {
    visible = value;
    if (visible) {
      refresh();
      schedule(POLL_MS);
    } else if (!waitingForSync) {
      clearTimeout(timer);
    }
  }

  document.getElementById("github-refresh").addEventListener("click", () => refresh());
  return { refresh, render, setVisible };
}
