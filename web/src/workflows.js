// The Workflows view: the workflow files of the workspace (or why one does not load), a form
// built from a workflow's declared parameters to start a run, and the history of its runs.
// Its routes are hashes, so a page can be linked and survives a reload:
//   #/workflows           the list
//   #/workflows/NAME      the list with NAME selected (details, run form, history)
//   #/runs/ID             one run (runview.js)
import * as api from "./api.js";
import { formatDuration, h, plural, relativeTime, time } from "./dom.js";
import { icon } from "./icons.js";
import { createRunPage, statusBadge, TERMINAL } from "./runview.js";
import { showError } from "./toasts.js";

const HISTORY_LIMIT = 50;
const HISTORY_POLL_MS = 2000;

export const workflowHash = (name) => `#/workflows/${encodeURIComponent(name)}`;
export const runHash = (id) => `#/runs/${encodeURIComponent(id)}`;

/** `{page: "list", workflow}` or `{page: "run", id}` for a hash of this view. */
export function parseRoute(hash) {
  const [, kind, rest] = /^#\/(workflows|runs)(?:\/(.*))?$/.exec(hash || "") || [];
  const value = rest ? safeDecode(rest.replace(/\/+$/, "")) : null;
  if (kind === "runs" && value) return { page: "run", id: value };
  return { page: "list", workflow: kind === "workflows" ? value : null };
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Where a load error is: the workspace path when the server names the workflow's own file. */
export function errorLocation(workflow) {
  const error = workflow.error || {};
  let file = error.file || workflow.path || "";
  if (workflow.path && (file === workflow.path || file.endsWith(`/${workflow.path}`))) file = workflow.path;
  return error.line ? `${file}:${error.line}` : file;
}

const describeStartError = (error) =>
  error.code === "params_invalid"
    ? `The parameters were refused: ${error.message}`
    : error.code === "workflow_load_failed"
      ? `The workflow could not be loaded: ${error.message}`
      : error.status === 403
        ? `You may not start runs (${error.message}).`
        : error.message;

// --- the run form ------------------------------------------------------------------------------

function paramField(param, index) {
  const id = `param-${index}-${param.name}`;
  const label = h(
    "label",
    { className: "param-label", for: id },
    param.name,
    param.required ? h("span", { className: "required", title: "required" }, " *") : null,
    h("span", { className: "param-type" }, param.type),
  );
  let input;
  let read;
  if (param.choices && param.choices.length) {
    input = h("select", { id, name: param.name });
    if (param.default == null) input.append(h("option", { value: "" }, "— choose —"));
    param.choices.forEach((choice, i) => input.append(h("option", { value: String(i) }, String(choice))));
    const preset = param.choices.indexOf(param.default);
    if (preset >= 0) input.value = String(preset);
    read = () => (input.value === "" ? undefined : param.choices[Number(input.value)]);
  } else if (param.type === "boolean") {
    input = h("input", { id, name: param.name, type: "checkbox", checked: param.default === true });
    read = () => input.checked;
  } else if (param.type === "integer" || param.type === "number") {
    input = h("input", {
      id,
      name: param.name,
      type: "number",
      step: param.type === "integer" ? "1" : "any",
      value: param.default == null ? "" : String(param.default),
    });
    read = () => {
      const raw = input.value.trim();
      if (raw === "") return undefined; // the default, or "is required" from the server
      const number = Number(raw);
      return Number.isFinite(number) ? number : raw; // the server says what is wrong with it
    };
  } else {
    input = h("input", {
      id,
      name: param.name,
      type: "text",
      value: param.default == null ? "" : String(param.default),
      spellcheck: false,
      autocomplete: "off",
    });
    read = () => (param.required && input.value === "" ? undefined : input.value);
  }
  if (param.required) input.setAttribute("aria-required", "true");
  const help = param.help ? h("span", { className: "param-help", id: `${id}-help` }, param.help) : null;
  if (help) input.setAttribute("aria-describedby", help.id);
  const field = h(
    "div",
    { className: `param-field ${param.type === "boolean" ? "boolean" : ""}`, dataset: { param: param.name } },
    label,
    input,
    help,
  );
  return { field, read };
}

/** The form of a workflow's parameters; `onStart(params)` resolves when the run was started. */
function runForm(workflow, { onStart, onClose }) {
  const fields = (workflow.params || []).map(paramField);
  const error = h("p", { className: "form-error", role: "alert", hidden: true });
  const start = h("button", { type: "submit", className: "primary" });
  start.innerHTML = icon("play");
  start.append("Start run");
  const close = h("button", { type: "button" }, "Close");
  close.addEventListener("click", onClose);
  const form = h(
    "form",
    { className: "run-form", noValidate: true, "aria-label": `Run ${workflow.name}` },
    h("h4", {}, `Run ${workflow.name}`),
    fields.length ? h("div", { className: "param-fields" }, fields.map((f) => f.field)) : h("p", { className: "muted" }, "This workflow has no parameters."),
    fields.some((f, i) => workflow.params[i].required) ? h("p", { className: "muted small" }, "* required") : null,
    error,
    h("div", { className: "form-buttons" }, close, start),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = {};
    fields.forEach((f, i) => {
      const value = f.read();
      if (value !== undefined) params[workflow.params[i].name] = value;
    });
    error.hidden = true;
    start.disabled = true;
    form.classList.add("busy");
    try {
      await onStart(params);
    } catch (failure) {
      error.textContent = describeStartError(failure);
      error.hidden = false;
    } finally {
      start.disabled = false;
      form.classList.remove("busy");
    }
  });
  return form;
}

// --- pieces of the list page ------------------------------------------------------------------

function workflowItem(workflow, selected) {
  const broken = Boolean(workflow.error);
  const meta = broken
    ? h("span", { className: "workflow-error" }, h("span", { className: "error-message" }, workflow.error.message), " ", h("code", { className: "error-location" }, errorLocation(workflow)))
    : h("span", { className: "workflow-meta" }, `${plural((workflow.params || []).length, "param")} · ${plural((workflow.steps || []).length, "step")}`);
  return h(
    "li",
    {},
    h(
      "a",
      {
        className: `workflow-item${broken ? " broken" : ""}`,
        href: workflowHash(workflow.name),
        "aria-current": selected ? "true" : null,
        dataset: { name: workflow.name },
      },
      h("span", { className: "workflow-name" }, workflow.name, broken ? h("span", { className: "badge failed" }, "error") : null),
      workflow.description && !broken ? h("span", { className: "workflow-description" }, workflow.description) : null,
      meta,
    ),
  );
}

function stepsSummary(workflow) {
  const steps = (workflow.steps || []).map((step) => {
    const facts = [];
    if (step.after && step.after.length) facts.push(`after ${step.after.join(", ")}`);
    if (step.retries) facts.push(plural(step.retries, "retry", "retries"));
    if (step.timeout) facts.push(`timeout ${step.timeout} s`);
    return h("li", {}, h("code", {}, step.name), facts.length ? h("span", { className: "muted" }, ` — ${facts.join(" · ")}`) : null);
  });
  const handlers = (workflow.on_failure || []).map((handler) =>
    h("li", {}, h("code", {}, handler.name), h("span", { className: "muted" }, " — on failure")),
  );
  if (!steps.length && !handlers.length) return h("p", { className: "muted" }, "No steps.");
  return h("ol", { className: "workflow-steps" }, steps, handlers);
}

function historyTable(runs, { showWorkflow }) {
  const rows = runs.map((run) =>
    h(
      "tr",
      { className: `run-row ${run.status}`, dataset: { run: run.id, status: run.status } },
      h("td", {}, statusBadge(run.status)),
      showWorkflow ? h("td", {}, h("a", { href: workflowHash(run.workflow) }, run.workflow)) : null,
      h("td", {}, h("a", { href: runHash(run.id), className: "run-link" }, h("code", {}, run.id))),
      h("td", { className: "when" }, time(run.started || run.created)),
      h("td", { className: "num" }, run.duration_ms != null ? formatDuration(run.duration_ms) : TERMINAL.has(run.status) ? "" : "…"),
      h("td", {}, run.requested_by || ""),
      h("td", { className: "params" }, h("code", {}, paramsText(run.params))),
    ),
  );
  return h(
    "table",
    { className: "runs-table" },
    h(
      "thead",
      {},
      h("tr", {}, h("th", {}, "Status"), showWorkflow ? h("th", {}, "Workflow") : null, h("th", {}, "Run"), h("th", {}, "Started"), h("th", {}, "Took"), h("th", {}, "By"), h("th", {}, "Parameters")),
    ),
    h("tbody", {}, rows),
  );
}

export const paramsText = (params) =>
  Object.entries(params || {})
    .map(([key, value]) => `${key}=${JSON.stringify(value)}`)
    .join(" ");

// --- the view ---------------------------------------------------------------------------------

/**
 * @param {{canRun: () => boolean, openFile: (path: string) => unknown}} options
 */
export function createWorkflowsView({ canRun, openFile }) {
  const listPage = document.getElementById("workflows-page");
  const listHost = document.getElementById("workflow-list");
  const detailHost = document.getElementById("workflow-detail");
  const runPage = createRunPage(document.getElementById("run-page"), {
    canRun,
    startRun: (name, params) => start(name, params),
  });

  let route = { page: "list", workflow: null };
  let lastWorkflow = null; // of the last list page shown, for the tab to go back to
  let visible = false;
  let workflows = null;
  let listError = null;
  let listing = null;
  let renderedDetail = ""; // what the detail shows, so a refresh keeps a half-filled form
  let formOpen = false;
  let history = { key: null, runs: null, error: null, json: "" };
  let historyTimer = null;
  let historyToken = 0;

  const selected = () => (workflows || []).find((w) => w.name === route.workflow) || null;

  async function start(name, params) {
    const answer = await api.startRun(name, params);
    location.hash = runHash(answer.run.id);
    return answer;
  }

  // --- the list ---

  function renderList() {
    if (listError && !workflows) {
      listHost.replaceChildren(h("li", { className: "list-note failed", role: "alert" }, `The workflows could not be read: ${listError}`));
      return;
    }
    if (!workflows) {
      listHost.replaceChildren(h("li", { className: "list-note" }, "Reading the workflows…"));
      return;
    }
    const items = workflows.map((w) => workflowItem(w, w.name === route.workflow));
    if (!items.length) {
      items.push(
        h("li", { className: "list-note" }, "No workflows yet. A workflow is a Python file in the workspace's ", h("code", {}, "workflows/"), " folder."),
      );
    }
    if (listError) items.unshift(h("li", { className: "list-note failed", role: "alert" }, `The workflows could not be refreshed: ${listError}`));
    listHost.replaceChildren(...items);
  }

  async function refreshList() {
    listing ||= (async () => {
      try {
        workflows = (await api.getWorkflows()).workflows || [];
        listError = null;
      } catch (error) {
        listError = error.message;
      } finally {
        listing = null;
      }
      renderList();
      renderDetail();
    })();
    return listing;
  }

  // --- the selected workflow ---

  function renderDetail(force = false) {
    const workflow = selected();
    const key = JSON.stringify([route.workflow, workflow, formOpen, canRun(), Boolean(workflows)]);
    if (!force && key === renderedDetail) return;
    renderedDetail = key;
    const parts = [];
    if (!route.workflow) {
      parts.push(h("div", { className: "detail-head" }, h("h3", {}, "Recent runs"), h("span", { className: "muted" }, "of every workflow · select a workflow to run it")));
    } else if (!workflow) {
      parts.push(h("div", { className: "detail-head" }, h("h3", {}, route.workflow)));
      if (workflows) {
        parts.push(h("p", { className: "detail-note failed" }, `There is no workflow named ${route.workflow} (it may have been renamed or deleted). Its past runs are below.`));
      }
    } else {
      parts.push(detailOf(workflow));
    }
    if (route.workflow) parts.push(h("h3", { className: "history-title" }, "Runs"));
    parts.push(h("div", { id: "workflow-history", className: "history" }));
    detailHost.replaceChildren(...parts);
    renderHistory(true);
  }

  function detailOf(workflow) {
    const head = h(
      "div",
      { className: "detail-head" },
      h("h3", {}, workflow.name),
      h("code", { className: "muted", title: `version ${workflow.version || ""}` }, workflow.path),
    );
    const body = h("div", { className: "workflow-detail-body", dataset: { name: workflow.name } }, head);
    if (workflow.description) body.append(h("p", { className: "description" }, workflow.description));
    if (workflow.error) {
      const open = h("button", { type: "button" }, "Open in editor");
      open.addEventListener("click", () => openFile(workflow.path));
      body.append(
        h(
          "div",
          { className: "load-error", role: "alert" },
          h("strong", {}, "This workflow does not load, so it cannot run."),
          h("pre", { className: "error-message" }, workflow.error.message),
          h("div", { className: "error-where" }, "at ", h("code", { className: "error-location" }, errorLocation(workflow)), " ", open),
        ),
      );
      return body;
    }
    body.append(h("h4", {}, "Steps"), stepsSummary(workflow));
    if (!canRun()) {
      body.append(h("p", { className: "role-note" }, "Starting a run needs the editor role."));
    } else if (formOpen) {
      body.append(
        runForm(workflow, {
          onStart: (params) => start(workflow.name, params),
          onClose: () => {
            formOpen = false;
            renderDetail();
          },
        }),
      );
    } else {
      const run = h("button", { type: "button", className: "primary", id: "workflow-run" });
      run.innerHTML = icon("play");
      run.append("Run…");
      run.addEventListener("click", () => {
        formOpen = true;
        renderDetail();
        detailHost.querySelector(".run-form input, .run-form select, .run-form button[type=submit]")?.focus();
      });
      body.append(h("div", { className: "detail-actions" }, run));
    }
    return body;
  }

  // --- history ---

  function renderHistory(force = false) {
    const host = detailHost.querySelector("#workflow-history");
    if (!host) return;
    const key = route.workflow || "";
    if (history.key !== key) {
      host.replaceChildren(h("p", { className: "muted" }, "Reading the runs…"));
      return;
    }
    const json = JSON.stringify([history.runs, history.error]);
    if (!force && json === history.json) {
      for (const t of host.querySelectorAll("time")) t.textContent = relativeTime(t.dateTime);
      return;
    }
    history.json = json;
    if (history.error && !history.runs) {
      host.replaceChildren(h("p", { className: "failed" }, `The runs could not be read: ${history.error}`));
    } else if (!history.runs.length) {
      host.replaceChildren(h("p", { className: "muted" }, route.workflow ? "No runs yet." : "No runs yet. Select a workflow and press Run."));
    } else {
      host.replaceChildren(
        history.error ? h("p", { className: "failed" }, `The runs could not be refreshed: ${history.error}`) : "",
        historyTable(history.runs, { showWorkflow: !route.workflow }),
      );
    }
  }

  async function refreshHistory() {
    const key = route.workflow || "";
    const token = ++historyToken;
    clearTimeout(historyTimer);
    let runs = null;
    let error = null;
    try {
      runs = (await api.getRuns({ workflow: route.workflow || undefined, limit: HISTORY_LIMIT })).runs || [];
    } catch (failure) {
      error = failure.message;
    }
    if (token !== historyToken) return;
    if (history.key !== key) history = { key, runs: null, error: null, json: "" };
    if (runs) history.runs = runs;
    history.error = error;
    renderHistory();
    // While a listed run is still going, keep its row current.
    if (visible && route.page === "list" && (error || runs.some((run) => !TERMINAL.has(run.status)))) {
      historyTimer = setTimeout(refreshHistory, error ? HISTORY_POLL_MS * 3 : HISTORY_POLL_MS);
    }
  }

  // --- routing ---

  function show(hash) {
    const next = parseRoute(hash);
    const changed = JSON.stringify(next) !== JSON.stringify(route);
    if (changed && next.workflow !== route.workflow) formOpen = false;
    route = next;
    listPage.hidden = route.page !== "list";
    if (route.page === "run") {
      clearTimeout(historyTimer);
      historyToken++;
      runPage.show(route.id);
      return;
    }
    runPage.hide();
    lastWorkflow = route.workflow;
    renderList();
    renderDetail();
    refreshList();
    refreshHistory();
  }

  function setVisible(value, hash) {
    visible = value;
    if (visible) {
      show(hash);
    } else {
      clearTimeout(historyTimer);
      historyToken++;
      runPage.hide();
    }
  }

  /** The roles were read (or changed): the run buttons depend on them. */
  function render() {
    if (!visible) return;
    if (route.page === "run") runPage.render();
    else renderDetail();
  }

  document.getElementById("workflows-refresh").addEventListener("click", async () => {
    await Promise.all([refreshList(), refreshHistory()]);
    if (listError) showError(new Error(listError), "Could not refresh the workflows");
  });

  return {
    setVisible,
    render,
    /** Where the tab goes back to: the workflow selected last, or the list. */
    lastHash: () => {
      const workflow = route.page === "run" ? runPage.workflow() : lastWorkflow;
      return workflow ? workflowHash(workflow) : "#/workflows";
    },
  };
}
