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
// While a sync runs or waits, and after "Sync now" until its pass ended.
const BUSY_POLL_MS = 2000;

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
  const input = h("input", { type: "text", value, readOnly: true, spellcheck: false, className: secret ? "secret" : "", "aria-label": label });
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

/** The steps, payload URL and secret for adding the push webhook in GitHub by hand. */
function manualWebhookSteps(hook) {
  return [
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
  ];
}

function webhookBody(answer) {
  const hook = answer.webhook || {};
  const connected = ["Connected to ", h("strong", {}, answer.repository), " (", h("strong", {}, answer.branch), ")"];
  if (hook.reachable === false) {
    // A webhook GitHub cannot deliver to would fail on every push: Slipway made none.
    return h(
      "div",
      { className: "github-webhook unreachable" },
      h("p", {}, ...connected, ", but GitHub cannot send pushes to this Slipway, so it made no webhook."),
      h("p", { className: "github-warning", dataset: { warning: "webhook" } }, hook.message || "The webhook URL cannot be reached from GitHub."),
      h("p", {}, "Until then, press Sync now on the GitHub tab for a sync right away."),
      h(
        "details",
        { className: "manual-webhook" },
        h("summary", {}, "Add the webhook by hand anyway (when a tunnel forwards this URL)"),
        ...manualWebhookSteps(hook),
      ),
    );
  }
  return h(
    "div",
    { className: "github-webhook" },
    h(
      "p",
      {},
      ...connected,
      ". Slipway could not add the webhook itself",
      hook.message ? ` (${hook.message})` : " (the token may not manage webhooks)",
      ", so GitHub will not tell Slipway about pushes until you add the webhook yourself.",
    ),
    ...manualWebhookSteps(hook),
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
      const unreachable = answer.webhook.reachable === false;
      title.textContent = unreachable ? "GitHub cannot send pushes here" : "Add the webhook in GitHub";
      form.hidden = true;
      intro.hidden = true;
      body.replaceChildren(webhookBody(answer));
      const [done] = setButtons([
        { label: unreachable ? "Done" : "I have added the webhook", value: "done", kind: "primary", action: () => finish(answer) },
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

const RESULT_KIND = { succeeded: "ok", failed: "failed", cancelled: "cancelled", skipped: "skipped" };

function resultBadge(result) {
  return h("span", { className: `badge ${RESULT_KIND[result] || "skipped"}` }, result || "unknown");
}

/** The time of day of `value` (with the date when it is not today), in a <time>. */
function clock(value) {
  const date = parseTime(value);
  if (!date) return h("time", {}, value || "");
  const today = date.toDateString() === new Date().toDateString();
  return h("time", { className: "clock", dateTime: value, title: absoluteTime(value) }, today ? date.toLocaleTimeString() : date.toLocaleString());
}

function commitRange(entry) {
  const after = h("code", { title: entry.after || "" }, shortSha(entry.after) || "—");
  if (!entry.before || entry.before === entry.after) return h("span", { className: "commits" }, after);
  return h("span", { className: "commits" }, h("code", { title: entry.before }, shortSha(entry.before)), " → ", after);
}

/** A key for an entry: its journal id (the row key), or what it says when it has none. */
const entryKey = (entry) => entry.id || `${entry.at}|${entry.trigger}|${entry.result}|${entry.after}`;

function historyRow(entry) {
  const warnings = entry.warnings || [];
  const drift = entry.drift || [];
  const failed = entry.result === "failed";
  const details = h("td", { className: "details" });
  if (entry.message) details.append(h("div", { className: failed ? "message failed" : "message" }, entry.message));
  if (drift.length) {
    details.append(
      h(
        "details",
        { className: "drift" },
        h("summary", {}, `${plural(drift.length, "file")} changed by hand, put back`),
        h("ul", {}, drift.map((path) => h("li", {}, path))),
      ),
    );
  }
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
  const result = h("td", {}, resultBadge(entry.result));
  if (drift.length) {
    result.append(
      " ",
      h(
        "span",
        { className: "badge drift", title: "Files changed by hand in the workspace since the sync before; this sync put them back as the branch has them" },
        `${drift.length} put back`,
      ),
    );
  }
  const dataset = { result: entry.result || "", trigger: entry.trigger || "", id: entry.id || "" };
  if (drift.length) dataset.drift = String(drift.length);
  return h(
    "tr",
    { className: `sync ${entry.result || ""}${drift.length ? " drifted" : ""}`, dataset },
    h("td", { className: "when" }, time(entry.at)),
    trigger,
    result,
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
  const url = h("code", {}, webhook.url || "");
  if (webhook.reachable === false) {
    return h("span", { className: "unreachable" }, "None: GitHub cannot reach ", webhook.url ? url : "this Slipway", " (see below)");
  }
  if (webhook.managed) {
    return h("span", {}, `Managed by Slipway${webhook.id != null ? ` (id ${webhook.id})` : ""} · `, url);
  }
  return h("span", {}, "Added by hand in GitHub (Slipway does not manage it) · ", url);
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

/** The journal entry the last pass left (one that changed something, or failed), or null. */
const passEntry = (pass, entries) =>
  (pass && pass.at && (entries || []).find((entry) => entry.at === pass.at && entry.trigger === pass.trigger)) || null;

/** The last pass, whatever it found: a pass that changed nothing has no journal row. */
function lastPassFact(pass, journaled) {
  const commit = pass.commit ? h("code", { title: pass.commit }, shortSha(pass.commit)) : null;
  const how = [pass.trigger, pass.duration_ms != null ? `took ${formatDuration(pass.duration_ms)}` : ""].filter(Boolean).join(", ");
  let what;
  if (pass.result === "succeeded") {
    what = journaled
      ? h("span", {}, "synced", commit ? [" to ", commit] : null)
      : h("span", { className: "up-to-date" }, "up to date", commit ? [" at ", commit] : null);
  } else {
    what = h("span", {}, resultBadge(pass.result), pass.message ? [" ", h("span", { className: pass.result === "failed" ? "failed" : "" }, pass.message)] : null);
  }
  return h("span", { className: "last-pass", dataset: { result: pass.result || "" } }, time(pass.at), " · ", what, how ? ` (${how})` : "");
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

/** What syncing does now: "Syncing abc1234 — applying since 12:00 on host:42", or the requests waiting. */
function syncActivity(sync) {
  if (!sync || sync.state === "idle" || (!sync.running && !sync.waiting)) return null;
  const running = sync.running;
  const parts = [];
  if (running) {
    parts.push(
      h("span", { className: "badge running" }, "syncing"),
      " ",
      h(
        "span",
        { className: "activity-text" },
        "Syncing",
        running.commit ? [" ", h("code", { title: running.commit }, shortSha(running.commit))] : null,
        ` — ${running.phase || "working"} since `,
        clock(running.since),
        " on ",
        h("code", {}, running.holder || "another instance"),
        running.trigger ? ` (${running.trigger})` : "",
      ),
    );
    if (running.cancel_requested_by) {
      parts.push(h("span", { className: "activity-note cancel" }, ` · cancel requested by ${running.cancel_requested_by}: it stops before it writes, or finishes if it is already applying`));
    }
    if (sync.waiting) parts.push(h("span", { className: "activity-note" }, ` · ${plural(sync.waiting, "request")} waiting behind it`));
  } else {
    parts.push(
      h("span", { className: "badge waiting" }, "waiting"),
      " ",
      h(
        "span",
        { className: "activity-text" },
        `${plural(sync.waiting, "sync request")} waiting`,
        sync.waiting_since ? [" since ", clock(sync.waiting_since)] : null,
        "; a sync starts on them shortly",
      ),
    );
  }
  return h("div", { className: "github-sync", id: "github-sync-state", dataset: { state: running ? "running" : "waiting" } }, parts);
}

/** Whether the view should follow the sync closely (every couple of seconds). */
const syncBusy = (status) => Boolean(status && status.sync && status.sync.state && status.sync.state !== "idle");

/** The status without what changes at every lease renewal, to tell when the card needs drawing again. */
function statusKey(status) {
  if (!status) return "";
  const running = status.sync && status.sync.running ? { ...status.sync.running, expires: undefined } : null;
  return JSON.stringify({ ...status, sync: status.sync ? { ...status.sync, running } : null });
}

/**
 * @param {{isAdmin: () => boolean, onWorkspaceChanged: () => Promise<unknown>}} options
 */
export function createGithubView({ isAdmin, onWorkspaceChanged }) {
  const statusHost = document.getElementById("github-status");
  const historyTable = document.getElementById("github-history");
  const historyNote = document.getElementById("github-history-note");
  const moreButton = h("button", { type: "button", id: "github-history-more", hidden: true }, "Load more");
  const historyFoot = h(
    "div",
    { className: "github-history-foot" },
    moreButton,
    h("p", { className: "github-history-hint" }, "Syncs that found nothing to change are not listed; the last one shows as “Last checked” above."),
  );
  historyTable.after(historyFoot);

  let status = null;
  let statusError = null;
  let renderedKey = null;
  // The journal as read so far: the first page (read again at each refresh) and the pages
  // "Load more" added; `next` is the cursor of the page after the last one shown.
  let history = { entries: null, next: null, paged: false, error: null };
  const rows = new Map(); // entry key -> {json, row}: rows kept, so an expanded list stays open
  let running = null;
  let fullAfter = false;
  let visible = false;
  let timer = null;
  let waitingForSync = null;
  let cancelling = false;

  /** The last pass when it belongs to this connection (one before it says nothing about it). */
  function currentPass() {
    const pass = status && status.connected && status.sync && status.sync.last_pass;
    if (!pass || !pass.at) return null;
    const connectedAt = parseTime(status.connected_at);
    return connectedAt && (parseTime(pass.at)?.getTime() ?? 0) < connectedAt.getTime() ? null : pass;
  }

  function render(force = true) {
    const journaled = Boolean(passEntry(currentPass(), history.entries));
    const key = `${statusKey(status)}|${statusError}|${isAdmin()}|${cancelling}|${journaled}`;
    if (!force && key === renderedKey) {
      for (const t of statusHost.querySelectorAll("time:not(.clock)")) t.textContent = relativeTime(t.dateTime);
      return;
    }
    renderedKey = key;
    const focused = document.activeElement && statusHost.contains(document.activeElement) ? document.activeElement.id : "";
    statusHost.replaceChildren(renderStatus());
    // Drawn again under the pointer or keyboard: the button in use keeps the focus.
    if (focused) document.getElementById(focused)?.focus();
  }

  function actionButtons(connected) {
    const buttons = [];
    if (connected) {
      const sync = h("button", { type: "button", id: "github-sync", className: "primary" });
      sync.innerHTML = icon("refresh");
      sync.append("Sync now");
      sync.addEventListener("click", () => syncNow(sync));
      buttons.push(sync);
    }
    const activity = status.sync;
    if (syncBusy(status) && !(activity.running && activity.running.trigger === "disconnect")) {
      const requested = Boolean(activity.running && activity.running.cancel_requested_by) && !activity.waiting;
      const cancel = h("button", { type: "button", id: "github-cancel", className: "danger", disabled: cancelling || requested });
      cancel.innerHTML = icon("stop");
      cancel.append(requested || cancelling ? "Cancelling…" : "Cancel sync");
      cancel.title = "Stop the running sync before it writes, and drop the waiting requests";
      cancel.addEventListener("click", () => cancelSync(cancel));
      buttons.push(cancel);
    }
    if (connected) {
      const disconnect = h("button", { type: "button", id: "github-disconnect" }, "Disconnect…");
      disconnect.addEventListener("click", disconnect_);
      buttons.push(disconnect);
    }
    return buttons;
  }

  function renderStatus() {
    if (statusError && !status) {
      return h("div", { className: "github-card error", role: "alert" }, `The GitHub connection could not be read: ${statusError}`);
    }
    if (!status) return h("div", { className: "github-card" }, "Reading the connection…");
    const admin = isAdmin();
    const stale = statusError
      ? h("p", { className: "github-stale failed", role: "alert" }, `The connection could not be refreshed: ${statusError}`)
      : null;
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
        syncActivity(status.sync),
        stale,
      );
      if (admin) {
        const connect = h("button", { type: "button", className: "primary", id: "github-connect" }, "Connect a repository…");
        connect.addEventListener("click", connect_);
        card.append(h("div", { className: "github-actions" }, connect, ...actionButtons(false)));
      } else {
        card.append(h("p", { className: "role-note" }, "Only an admin can connect a repository."));
      }
      return card;
    }
    const connecting = status.state === "connecting";
    const webhook = status.webhook || {};
    const pass = currentPass();
    const card = h(
      "div",
      { className: `github-card connected${connecting ? " connecting" : ""}`, dataset: { connected: "true", state: status.state || "connected" } },
      h(
        "div",
        { className: "github-card-head" },
        h("span", { className: connecting ? "dot pending" : "dot on" }),
        connecting ? "Connecting to " : "Connected to ",
        h("strong", { id: "github-repository" }, status.repository),
        " · branch ",
        h("strong", { id: "github-branch" }, status.branch),
      ),
      connecting ? h("p", { className: "connecting-note" }, "The first sync has not finished: the workspace becomes the branch when it does.") : null,
      syncActivity(status.sync),
      definitions([
        ["Last sync", lastSyncFact(status.last_sync)],
        pass ? ["Last checked", lastPassFact(pass, Boolean(passEntry(pass, history.entries)))] : null,
        ["Webhook", webhookFact(webhook)],
        ["Connected", h("span", {}, time(status.connected_at), status.connected_by ? ` by ${status.connected_by}` : "")],
        ["Snapshots", snapshotsFact(status.snapshots)],
      ]),
      webhook.reachable === false
        ? h(
            "p",
            { className: "github-warning", id: "github-webhook-warning", dataset: { warning: "webhook" } },
            h("strong", {}, "Pushes do not reach this Slipway. "),
            webhook.message || "GitHub cannot deliver to the webhook URL.",
          )
        : null,
      stale,
    );
    if (admin) {
      card.append(h("div", { className: "github-actions" }, actionButtons(true)));
    } else {
      card.append(h("p", { className: "role-note" }, "Only an admin can sync or disconnect the repository."));
    }
    return card;
  }

  function renderHistory() {
    const tbody = historyTable.querySelector("tbody");
    const { entries, error } = history;
    if (error && !entries) {
      historyNote.textContent = `The sync history could not be read: ${error}`;
      historyNote.className = "failed";
      historyNote.hidden = false;
      return;
    }
    historyNote.className = error ? "failed" : "";
    if (!entries || !entries.length) {
      historyNote.textContent = error ? `The sync history could not be read: ${error}` : "No syncs yet.";
      historyNote.hidden = false;
      historyTable.hidden = true;
      historyFoot.hidden = true;
      rows.clear();
      return;
    }
    historyNote.textContent = error ? `The sync history could not be refreshed: ${error}` : "";
    historyNote.hidden = !error;
    historyTable.hidden = false;
    historyFoot.hidden = false;
    moreButton.hidden = !history.next;
    // Rows already shown are kept (moved, not rebuilt), so an expanded list stays open.
    const seen = new Set();
    const ordered = entries.map((entry) => {
      const key = entryKey(entry);
      seen.add(key);
      const json = JSON.stringify(entry);
      let kept = rows.get(key);
      if (!kept || kept.json !== json) {
        kept = { json, row: historyRow(entry) };
        rows.set(key, kept);
      } else {
        for (const t of kept.row.querySelectorAll("time")) t.textContent = relativeTime(t.dateTime);
      }
      return kept.row;
    });
    for (const key of [...rows.keys()]) if (!seen.has(key)) rows.delete(key);
    if (ordered.length !== tbody.children.length || ordered.some((row, index) => tbody.children[index] !== row)) {
      tbody.replaceChildren(...ordered);
    }
  }

  /** The first page read again, merged with the pages "Load more" added below it. */
  function mergeFirstPage(page) {
    const first = page.entries || [];
    const older = history.paged ? history.entries || [] : [];
    const lastFirst = first.length ? first[first.length - 1] : null;
    // More new rows than a page since the last read: what lay below no longer joins on; start over.
    const joined = !page.next || !older.length || older.some((entry) => lastFirst && entryKey(entry) === entryKey(lastFirst));
    if (!history.paged || !joined) {
      history = { entries: first, next: page.next || null, paged: false, error: null };
      return;
    }
    const keys = new Set(first.map(entryKey));
    history = { ...history, entries: [...first, ...older.filter((entry) => !keys.has(entryKey(entry)))], error: null };
  }

  async function loadMore() {
    if (!history.next) return;
    moreButton.disabled = true;
    moreButton.textContent = "Loading…";
    try {
      const page = await api.getGithubSyncs({ limit: HISTORY_LIMIT, after: history.next });
      const keys = new Set((history.entries || []).map(entryKey));
      history = {
        entries: [...(history.entries || []), ...(page.entries || []).filter((entry) => !keys.has(entryKey(entry)))],
        next: page.next || null,
        paged: true,
        error: null,
      };
      renderHistory();
    } catch (error) {
      showError(error, "Could not read older syncs");
    } finally {
      moreButton.disabled = false;
      moreButton.textContent = "Load more";
    }
  }

  /**
   * Read the status, and the journal's first page when it may have changed (`full`: always).
   */
  async function refresh({ full = true } = {}) {
    if (running) {
      // Asked for everything while a quick read is under way: read everything after it.
      if (full) fullAfter = true;
      return running;
    }
    running = (async () => {
      try {
        status = await api.getGithub();
        statusError = null;
      } catch (error) {
        statusError = error?.message || String(error);
      }
      render(false);
      const newest = history.entries && history.entries[0];
      const lastSync = status && status.last_sync;
      const stale =
        full ||
        !history.entries ||
        history.error ||
        (lastSync ? !newest || entryKey(lastSync) !== entryKey(newest) : Boolean(newest));
      if (stale) {
        try {
          mergeFirstPage(await api.getGithubSyncs({ limit: HISTORY_LIMIT }));
        } catch (error) {
          history = { ...history, error: error?.message || String(error) };
        }
      }
      renderHistory();
      render(false); // "Last checked" says whether the last pass is in the journal
      if (waitingForSync && status && !statusError) checkQueuedSync();
    })().finally(() => {
      running = null;
      if (fullAfter) {
        fullAfter = false;
        refresh();
      } else {
        plan();
      }
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
      const pushes = answer.webhook && answer.webhook.reachable === false ? "Press Sync now after a push (GitHub cannot send pushes here)." : `Pushes to ${answer.branch} now sync the workspace.`;
      toast(`Connected to ${what}${counts}. ${pushes}`);
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
        syncBusy(status) ? sentence("A sync is running or waiting: it is stopped first.") : null,
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
    waitingForSync = null;
    await Promise.all([onWorkspaceChanged(), refresh()]);
  }

  async function syncNow(button) {
    button.disabled = true;
    const before = status && status.sync && status.sync.last_pass ? status.sync.last_pass.at : null;
    try {
      const answer = await api.syncGithub();
      waitingForSync = { before, until: Date.now() + 120000 };
      const behind = answer.waiting_for;
      if (behind) {
        const what = [behind.trigger ? `the ${behind.trigger} sync` : "the running sync", behind.commit ? ` of ${shortSha(behind.commit)}` : ""].join("");
        const since = parseTime(behind.since);
        toast(
          `Sync queued behind ${what}, ${behind.phase || "running"} on ${behind.holder || "another instance"} since ${since ? since.toLocaleTimeString() : behind.since}: it starts when that one ends.`,
          { timeout: 8000 },
        );
      } else if (answer.message) {
        toast(`Sync queued: ${answer.message}`, { timeout: 8000 });
      } else {
        toast("Sync queued: the branch is fetched and the workspace compared with it; the result shows here.");
      }
    } catch (error) {
      showError(new Error(describeGithubError(error)), "Sync now");
    } finally {
      button.disabled = false;
    }
    await refresh({ full: false });
  }

  async function cancelSync(button) {
    if (cancelling) return;
    cancelling = true;
    button.disabled = true;
    try {
      const answer = await api.cancelGithubSync();
      const dropped = answer.dropped_requests || 0;
      const droppedText = dropped ? `${plural(dropped, "waiting request")} dropped` : "";
      if (answer.running) {
        toast(
          `Cancel requested: the running sync stops before it writes (one already applying a commit finishes)${droppedText ? `; ${droppedText}` : ""}.`,
          { timeout: 6000 },
        );
      } else if (answer.cancelled) {
        toast(`Cancelled: ${droppedText || "nothing was waiting"}.`, { timeout: 4000 });
      } else {
        toast("Nothing to cancel: no sync was running or waiting.", { timeout: 4000 });
      }
    } catch (error) {
      showError(new Error(describeGithubError(error)), "Cancel sync");
    } finally {
      cancelling = false;
    }
    await refresh({ full: false });
  }

  /** After "Sync now": once a newer pass ended and nothing waits, say how it went. */
  function checkQueuedSync() {
    const pass = status.sync && status.sync.last_pass;
    const { before } = waitingForSync;
    const newer =
      pass && pass.at && pass.at !== before && (!before || (parseTime(pass.at)?.getTime() ?? 0) >= (parseTime(before)?.getTime() ?? 0));
    if (newer && !syncBusy(status)) {
      waitingForSync = null;
      const entry = passEntry(pass, history.entries);
      if (pass.result === "failed") {
        toast(`The sync failed: ${pass.message || "see the sync history"}`, { kind: "error" });
      } else if (pass.result === "cancelled" || pass.result === "skipped") {
        toast(`The sync was ${pass.result}: ${pass.message || "see the sync history"}`, { timeout: 5000 });
      } else if (entry) {
        toast(`Synced: ${entry.added ?? 0} added, ${entry.changed ?? 0} changed, ${entry.deleted ?? 0} deleted.`, { timeout: 4000 });
        onWorkspaceChanged();
      } else {
        toast(`Up to date: the workspace already matches ${status.branch || "the branch"}${pass.commit ? ` at ${shortSha(pass.commit)}` : ""}.`, { timeout: 4000 });
      }
    } else if (Date.now() > waitingForSync.until) {
      waitingForSync = null;
    }
  }

  /**
   * The next read: every couple of seconds while a sync runs or waits (or one asked for has
   * not ended), otherwise every POLL_MS; none while the view or the browser tab is hidden.
   */
  function plan() {
    clearTimeout(timer);
    timer = null;
    if (!visible || document.hidden) return;
    const delay = syncBusy(status) || waitingForSync ? BUSY_POLL_MS : POLL_MS;
    timer = setTimeout(() => refresh({ full: false }), delay);
  }

  function setVisible(value) {
    visible = value;
    if (visible) refresh();
    else plan();
  }

  document.addEventListener("visibilitychange", () => {
    if (!visible) return;
    if (document.hidden) plan();
    else refresh({ full: false });
  });
  moreButton.addEventListener("click", loadMore);
  document.getElementById("github-refresh").addEventListener("click", () => refresh());
  return { refresh, render, setVisible };
}
