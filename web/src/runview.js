// One run's page (#/runs/ID): its status and parameters, its steps (status, attempt, duration,
// error, output) and its log. The run is read about every second until it ends. The log comes
// from the server-sent event stream; when no event arrives within a few seconds (a host that
// buffers responses, as Azure Functions does) it is read by polling `?after=N` instead. With an
// API token it is always polled: EventSource cannot send the Authorization header, and the
// token never goes into a URL.
import * as api from "./api.js";
import { absoluteTime, formatDuration, h, parseTime, time } from "./dom.js";
import { icon } from "./icons.js";
import { showError, toast } from "./toasts.js";

export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const RUN_POLL_MS = 1000;
const LOG_POLL_MS = 1000;
const RETRY_MS = 3000;
const SSE_SILENCE_MS = 3000;
const MAX_LOG_LINES = 20000;

const STATUS_KIND = {
  queued: "waiting",
  waiting: "waiting",
  running: "running",
  retrying: "retrying",
  succeeded: "ok",
  failed: "failed",
  timed_out: "failed",
  canceled: "canceled",
  skipped: "skipped",
};

export function statusBadge(status) {
  return h("span", { className: `badge status ${STATUS_KIND[status] || "skipped"}`, dataset: { status: status || "" } }, (status || "unknown").replace("_", " "));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const clock = (value) => parseTime(value)?.toLocaleTimeString([], { hour12: false }) ?? "";

/** How long a step took, or has been running so far. */
function stepDuration(step, now = Date.now()) {
  if (step.duration_ms != null) return formatDuration(step.duration_ms);
  const started = parseTime(step.started);
  if (started && !step.finished && (step.status === "running" || step.status === "retrying")) {
    return `${formatDuration(Math.max(0, now - started.getTime()))} so far`;
  }
  return "";
}

// --- following the log -------------------------------------------------------------------------

/**
 * Follows a run's log from line `after`: SSE first, polling when the stream stays silent.
 * `onLines(lines)` gets each new line once, in order; `onMode("live" | "polling" | "complete")`;
 * `onError(message | null)` when reading fails (polling keeps retrying) or works again.
 */
class LogFollower {
  constructor(runId, { onLines, onMode, onError }) {
    this.runId = runId;
    this.next = 0;
    this.handlers = { onLines, onMode, onError };
    this.stopped = false;
    this.source = null;
    this.silence = null;
    this.pending = [];
    this.flushTimer = null;
  }

  start() {
    if (typeof EventSource === "function" && !api.usesToken()) this.stream();
    else this.poll();
  }

  stop() {
    this.stopped = true;
    this.closeStream();
    clearTimeout(this.flushTimer);
  }

  closeStream() {
    clearTimeout(this.silence);
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  take(lines) {
    for (const line of lines) {
      if (line.seq <= this.next) continue; // seen already (a reconnect, or the poll after the stream)
      this.next = line.seq;
      this.pending.push(line);
    }
    // Lines arrive one event at a time: hand them over in batches.
    this.flushTimer ||= setTimeout(() => {
      this.flushTimer = null;
      const batch = this.pending;
      this.pending = [];
      if (batch.length && !this.stopped) this.handlers.onLines(batch);
    }, 30);
  }

  stream() {
    const source = new EventSource(api.runLogsUrl(this.runId, this.next));
    this.source = source;
    let heard = false;
    const hear = () => {
      if (!heard) {
        heard = true;
        clearTimeout(this.silence);
        this.handlers.onMode("live");
      }
    };
    const fallBack = () => {
      if (this.source !== source || this.stopped) return;
      this.closeStream();
      this.poll();
    };
    // Buffered by the host, the stream says nothing until it ends: read by polling instead.
    this.silence = setTimeout(() => heard || fallBack(), SSE_SILENCE_MS);
    source.addEventListener("line", (event) => {
      hear();
      try {
        this.take([JSON.parse(event.data)]);
      } catch {
        // A line that is not JSON is not shown; the poll would not return it either.
      }
    });
    source.addEventListener("status", hear);
    source.addEventListener("end", () => {
      hear();
      this.closeStream();
      this.complete();
    });
    source.addEventListener("error", () => {
      // Closed for good (an error status, not an event stream): polling says why in words.
      // Before any event: maybe a proxy in the way; polling works through it.
      if (source.readyState === EventSource.CLOSED || !heard) fallBack();
    });
  }

  complete() {
    // Whatever a batch still holds is handed over first.
    setTimeout(() => {
      if (!this.stopped) this.handlers.onMode("complete");
    }, 40);
  }

  async poll() {
    this.handlers.onMode("polling");
    while (!this.stopped) {
      let page;
      try {
        page = await api.getRunLogs(this.runId, this.next);
      } catch (error) {
        if (this.stopped) return;
        this.handlers.onError(error.status === 404 ? `${error.message}` : `The log could not be read: ${error.message}`);
        if (error.status === 404) return;
        await sleep(RETRY_MS);
        continue;
      }
      if (this.stopped) return;
      this.handlers.onError(null);
      this.take(page.lines || []);
      if (page.next > this.next) this.next = page.next;
      if (page.complete) {
        this.complete();
        return;
      }
      // A full page means more is waiting: read on at once.
      if ((page.lines || []).length < 1000) await sleep(LOG_POLL_MS);
    }
  }
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
  let timer = null;
  let token = 0;
  let follower = null;
  let logMode = "";
  let logError = null;
  let filter = "";
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
    const select = h("select", { className: "log-filter", "aria-label": "Show the lines of" }, h("option", { value: "" }, "All steps"));
    select.addEventListener("change", () => {
      filter = select.value;
      for (const line of log.children) line.hidden = Boolean(filter) && line.dataset.step !== filter;
      log.scrollTop = log.scrollHeight;
    });
    const mode = h("span", { className: "log-mode muted" });
    const log = h("div", { className: "log", role: "log", "aria-label": "Run log", tabIndex: 0 });
    const logNote = h("p", { className: "log-note muted" }, "No log lines yet.");
    parts = { back, title, badge, actions, error, facts, steps, select, mode, log, logNote };
    host.replaceChildren(
      h("div", { className: "run-view" },
        back,
        h("div", { className: "run-head" }, title, badge, h("span", { className: "spacer" }), actions),
        error,
        facts,
        h("h3", {}, "Steps"),
        steps,
        h("div", { className: "log-head" }, h("h3", {}, "Log"), select, mode),
        logNote,
        log,
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
    renderFilter();
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

  function renderFilter() {
    const names = (run.steps || []).map((s) => s.name);
    const have = [...parts.select.options].slice(1).map((o) => o.value);
    if (names.join() === have.join()) return;
    parts.select.replaceChildren(h("option", { value: "" }, "All steps"), ...names.map((n) => h("option", { value: n, selected: n === filter }, n)));
  }

  function renderLogState() {
    if (!parts) return;
    const words = { live: "live", polling: "polling", complete: "complete" };
    parts.mode.textContent = logError ? "" : words[logMode] || "";
    parts.mode.className = `log-mode ${logMode}`;
    const empty = !parts.log.children.length;
    parts.logNote.hidden = !logError && !empty;
    parts.logNote.className = `log-note ${logError ? "failed" : "muted"}`;
    parts.logNote.textContent = logError || (logMode === "complete" ? "The run wrote no log lines." : "No log lines yet.");
  }

  function appendLines(lines) {
    const log = parts.log;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      const step = line.step || "";
      const row = h(
        "div",
        { className: `log-line stream-${line.stream || "none"}`, dataset: { seq: line.seq, step, stream: line.stream || "" } },
        h("span", { className: "log-time", title: absoluteTime(line.time) }, clock(line.time)),
        h("span", { className: "log-step", title: step }, step),
        h("span", { className: "log-text" }, line.text),
      );
      row.hidden = Boolean(filter) && step !== filter;
      fragment.append(row);
    }
    log.append(fragment);
    while (log.children.length > MAX_LOG_LINES) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
    renderLogState();
  }

  // --- reading the run ---

  async function poll(id, mine) {
    try {
      run = await api.getRun(id);
      runError = null;
    } catch (error) {
      runError = error.message;
      if (mine !== token) return;
      render();
      if (error.status !== 404) timer = setTimeout(() => poll(id, mine), RETRY_MS);
      return;
    }
    if (mine !== token) return;
    render();
    if (!TERMINAL.has(run.status)) timer = setTimeout(() => poll(id, mine), RUN_POLL_MS);
  }

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
    const mine = ++token;
    build();
    render();
    poll(id, mine);
    follower = new LogFollower(id, {
      onLines: (lines) => mine === token && appendLines(lines),
      onMode: (mode) => {
        if (mine !== token) return;
        logMode = mode;
        renderLogState();
      },
      onError: (message) => {
        if (mine !== token) return;
        logError = message;
        renderLogState();
      },
    });
    follower.start();
  }

  function hide() {
    token++;
    clearTimeout(timer);
    follower?.stop();
    follower = null;
    runId = null;
    run = null;
    runError = null;
    logMode = "";
    logError = null;
    filter = "";
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
