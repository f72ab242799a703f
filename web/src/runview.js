// One run's page (#/runs/ID): its status and parameters, its steps (status, attempt, duration,
// error, output) and its log. The run is read about every second until it ends. The log is
// followed live (logview.js: the event stream, or polling where the stream stays silent).
import * as api from "./api.js";
import { absoluteTime, formatDuration, h, parseTime, time } from "./dom.js";
import { icon } from "./icons.js";
import { createFollower } from "./follow.js";
import { createLogPanel } from "./logview.js";
import { showError, toast } from "./toasts.js";

export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const RUN_POLL_MS = 1000;
const RETRY_MS = 3000;

export const STATUS_KIND = {
  queued: "waiting",
  waiting: "waiting",
  pending: "waiting",
  running: "running",
  building: "running",
  publishing: "running",
  verifying: "running",
  retrying: "retrying",
  succeeded: "ok",
  failed: "failed",
  timed_out: "failed",
  rolled_back: "failed",
  canceled: "canceled",
  superseded: "skipped",
  skipped: "skipped",
};

export function statusBadge(status) {
  return h("span", { className: `badge status ${STATUS_KIND[status] || "skipped"}`, dataset: { status: status || "" } }, (status || "unknown").replace("_", " "));
}


/** How long a step took, or has been running so far. */
function stepDuration(step, now = Date.now()) {
  if (step.duration_ms != null) return formatDuration(step.duration_ms);
  const started = parseTime(step.started);
  if (started && !step.finished && (step.status === "running" || step.status === "retrying")) {
    return `${formatDuration(Math.max(0, now - started.getTime()))} so far`;
  }
  return "";
}

// --- the page ----------------------------------------------------------------------------------

/**
 * @param {HTMLElement} host
 * @param {{canRun: () => boolean, startRun: (workflow: string, params: object) => Promise<unknown>}} options
 */
export function createRunPage(host, { canRun, startRun }) {
  let runId = null;
  let run = null;
  let runError = null;
  let logPanel = null;
  let canceling = false;
  const openOutputs = new Set();
  let renderedSteps = "";

  // The page's parts, built once per shown run; only what changed is updated.
  let parts = null;

  function build() {
    const back = h("a", { className: "back", href: "#/workflows" });
    back.innerHTML = icon("back");
    back.append(h("span", {}, "Workflows"));
    const title = h("h2", {}, h("span", { className: "run-workflow" }, "Run"), " ", h("code", { className: "run-id" }, runId));
    const badge = h("span", { className: "run-status" });
    const actions = h("div", { className: "run-actions" });
    const error = h("p", { className: "run-error", role: "alert", hidden: true });
    const facts = h("dl", { className: "run-facts" });
    const steps = h("ol", { className: "run-steps", "aria-label": "Steps" });
    logPanel = createLogPanel({ label: "Run log", empty: "The run wrote no log lines." });
    parts = { back, title, badge, actions, error, facts, steps };
    host.replaceChildren(
      h("div", { className: "run-view" },
        back,
        h("div", { className: "run-head" }, title, badge, h("span", { className: "spacer" }), actions),
        error,
        facts,
        h("h3", {}, "Steps"),
        steps,
        logPanel.elements,
      ),
    ); // fmt: skip
  }

  function render() {
    if (!parts || !runId) return;
    const { back, title, badge, actions, error, facts } = parts;
    if (!run) {
      badge.replaceChildren();
      actions.replaceChildren();
      facts.replaceChildren();
      error.textContent = runError ? `The run could not be read: ${runError}` : "";
      error.hidden = !runError;
      if (!runError) facts.append(h("dd", { className: "muted" }, "Reading the run…"));
      return;
    }
    back.href = `#/workflows/${encodeURIComponent(run.workflow)}`;
    back.lastChild.textContent = run.workflow;
    title.firstChild.textContent = run.workflow;
    badge.replaceChildren(statusBadge(run.status));
    const problems = [];
    if (run.error) problems.push(run.error);
    if (runError) problems.push(`The run could not be refreshed: ${runError}`);
    error.textContent = problems.join(" · ");
    error.hidden = !problems.length;
    // A cancel is what someone asked for, not a failure.
    error.classList.toggle("note", run.status === "canceled" && !runError);
    renderFacts();
    renderActions();
    renderSteps();
    logPanel.setSteps((run.steps || []).map((s) => s.name));
  }

  function renderFacts() {
    const pairs = [
      ["Requested", h("span", {}, time(run.created), run.requested_by ? ` by ${run.requested_by}` : "")],
      ["Started", run.started ? h("span", { title: absoluteTime(run.started) }, absoluteTime(run.started)) : "not yet"],
      ["Finished", run.finished ? h("span", {}, absoluteTime(run.finished)) : TERMINAL.has(run.status) ? "" : "not yet"],
      ["Duration", h("span", { className: "run-duration" }, run.duration_ms != null ? formatDuration(run.duration_ms) : stepDuration({ ...run, status: "running" }) || "—")],
      ["Version", h("code", {}, run.version || "")],
      ["Parameters", paramsList(run.params)],
    ];
    if (run.cancel_requested && !TERMINAL.has(run.status)) pairs.push(["Cancel", "requested: the running commands are being stopped"]);
    parts.facts.replaceChildren(...pairs.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
  }

  function paramsList(params) {
    const entries = Object.entries(params || {});
    if (!entries.length) return "none";
    return h("span", { className: "run-params" }, entries.map(([key, value]) => h("code", { dataset: { param: key } }, `${key} = ${JSON.stringify(value)}`)));
  }

  function renderActions() {
    const buttons = [];
    if (canRun()) {
      if (!TERMINAL.has(run.status)) {
        const cancel = h("button", { type: "button", className: "danger", id: "run-cancel", disabled: canceling || run.cancel_requested });
        cancel.innerHTML = icon("stop");
        cancel.append(run.cancel_requested ? "Canceling…" : "Cancel run");
        cancel.addEventListener("click", () => cancelRun(cancel));
        buttons.push(cancel);
      } else {
        const again = h("button", { type: "button", id: "run-again", title: "Start a new run with the same parameters" });
        again.innerHTML = icon("play");
        again.append("Run again");
        again.addEventListener("click", () => runAgain(again));
        buttons.push(again);
      }
    }
    // Replace only when the buttons change, so a click in flight keeps its button.
    const key = buttons.map((b) => `${b.id}:${b.textContent}:${b.disabled}`).join();
    if (parts.actions.dataset.key !== key) {
      parts.actions.dataset.key = key;
      parts.actions.replaceChildren(...buttons);
    }
  }

  function renderSteps() {
    const now = Date.now();
    const key = JSON.stringify(run.steps) + (run.steps || []).map((s) => stepDuration(s, now)).join();
    if (key === renderedSteps) return;
    renderedSteps = key;
    const rows = (run.steps || []).map((step) => {
      const facts = [];
      if (step.after && step.after.length) facts.push(h("span", { className: "step-after" }, `after ${step.after.join(", ")}`));
      if (step.attempts > 1 && step.attempt > 0) facts.push(h("span", { className: "step-attempt" }, `attempt ${step.attempt} of ${step.attempts}`));
      const duration = stepDuration(step, now);
      const row = h(
        "li",
        { className: `run-step ${STATUS_KIND[step.status] || ""}`, dataset: { step: step.name, status: step.status } },
        h(
          "div",
          { className: "step-line" },
          statusBadge(step.status),
          h("span", { className: "step-name" }, step.name),
          step.kind === "on_failure" ? h("span", { className: "tag" }, "on failure") : null,
          facts,
          h("span", { className: "spacer" }),
          h("span", { className: "step-duration" }, duration),
        ),
        step.error ? h("pre", { className: "step-error" }, step.error) : null,
      );
      if (step.output != null) {
        const details = h("details", { className: "step-output", open: openOutputs.has(step.name) }, h("summary", {}, "Output"), h("pre", {}, JSON.stringify(step.output, null, 2)));
        details.addEventListener("toggle", () => (details.open ? openOutputs.add(step.name) : openOutputs.delete(step.name)));
        row.append(details);
      }
      return row;
    });
    parts.steps.replaceChildren(...(rows.length ? rows : [h("li", { className: "muted" }, "No steps yet.")]));
  }

  // --- reading the run ---

  const follower = createFollower({
    read: (id) => api.getRun(id),
    isFinal: (record) => TERMINAL.has(record.status),
    onRecord: (record) => {
      run = record;
      runError = null;
      render();
    },
    onError: (error) => {
      runError = error.message;
      render();
    },
    pollMs: RUN_POLL_MS,
    retryMs: RETRY_MS,
  });

  async function cancelRun(button) {
    if (canceling) return;
    canceling = true;
    button.disabled = true;
    const id = runId;
    try {
      const answer = await api.cancelRun(id);
      if (id === runId) run = { ...run, ...answer };
      toast("Cancel requested: the run stops and its running commands are killed.", { timeout: 3000 });
    } catch (error) {
      if (error.code === "run_finished") showError(new Error(`the run already ended (${error.message})`), "Could not cancel");
      else showError(error, "Could not cancel the run");
    } finally {
      canceling = false;
      if (id === runId) render();
    }
  }

  async function runAgain(button) {
    button.disabled = true;
    try {
      await startRun(run.workflow, run.params || {});
    } catch (error) {
      showError(
        new Error(error.code === "params_invalid" ? `the parameters are refused now: ${error.message}` : error.message),
        `Could not run ${run.workflow} again`,
      );
      button.disabled = false;
    }
  }

  function show(id) {
    host.hidden = false;
    if (id === runId && parts) return;
    hide();
    host.hidden = false;
    runId = id;
    build();
    render();
    follower.start(id);
    logPanel.follow({ url: (after) => api.runLogsUrl(id, after), read: (after) => api.getRunLogs(id, after) });
  }

  function hide() {
    follower.stop();
    logPanel?.stop();
    logPanel = null;
    runId = null;
    run = null;
    runError = null;
    canceling = false;
    renderedSteps = "";
    openOutputs.clear();
    parts = null;
    host.replaceChildren();
    host.hidden = true;
  }

  return {
    show,
    hide,
    render: () => render(),
    workflow: () => run?.workflow || null,
  };
}
