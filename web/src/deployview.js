// One deployment's page (#/deployments/ID): its status, site, trigger, who asked, the commit,
// its steps (checkout … verify, and rollback when a failed verify republished the last good
// version) with their durations, an estimate of the time left, the error when it failed, and
// its log. The deployment is read about every second until it ends; the log is followed live
// (logview.js). Admins may cancel it (until publishing begins) and retry it once it ended.
import * as api from "./api.js";
import { absoluteTime, formatDuration, h, parseTime, time } from "./dom.js";
import { icon } from "./icons.js";
import { createFollower } from "./follow.js";
import { createLogPanel } from "./logview.js";
import { statusBadge } from "./runview.js";
import { showError, toast } from "./toasts.js";

export const FINAL = new Set(["succeeded", "failed", "canceled", "superseded", "rolled_back"]);
const POLL_MS = 1000;
const RETRY_MS = 3000;

export const deploymentHash = (id) => `#/deployments/${encodeURIComponent(id)}`;
export const siteHash = (site) => `#/sites/${encodeURIComponent(site)}`;

/** The random part of a deployment id (`<time>-<random>-<site>`): short, and unique enough to tell them apart. */
export function shortId(id) {
  const match = /^[0-9a-f]{12}-([0-9a-f]{8})-/.exec(id || "");
  return match ? match[1] : String(id || "").slice(0, 8);
}

export const shortSha = (sha) => (sha ? String(sha).slice(0, 7) : "");

/** A deployment id as a short link to its page, the whole id in its tooltip. */
export function deploymentLink(id, props = {}) {
  return h("a", { href: deploymentHash(id), title: id, className: "deployment-link", ...props }, h("code", {}, shortId(id)));
}

/** A commit, shortened, the whole SHA in its tooltip; "—" when there is none (yet). */
export function commitCode(sha) {
  return sha ? h("code", { className: "commit", title: sha }, shortSha(sha)) : h("span", { className: "muted" }, "—");
}

const STATE_KIND = { UNDEPLOYED: "skipped", DEPLOYING: "running", DEPLOYED: "ok", DEPLOYMENT_FAILED: "failed" };

export function siteStateBadge(state) {
  const value = state || "UNDEPLOYED";
  return h("span", { className: `badge site-state ${STATE_KIND[value] || "skipped"}`, dataset: { state: value } }, value.replace("_", " "));
}

/** "about 40 s left" (null: nothing to say). */
export function etaText(estimate) {
  const remaining = estimate?.remaining_ms;
  if (remaining == null) return null;
  if (remaining <= 0) return "taking longer than usual";
  const seconds = Math.max(1, Math.round(remaining / 1000));
  if (seconds < 60) return `about ${seconds} s left`;
  return `about ${Math.round(seconds / 60)} min left`;
}

/** What was deployed from, in words: "workspace folder site" or "repo @ ref". */
export function sourceText(request = {}) {
  if (request.source === "git") {
    const where = request.folder ? ` (folder ${request.folder})` : "";
    return `${request.repository || "a repository"}${request.ref ? ` @ ${request.ref}` : ""}${where}`;
  }
  if (request.source === "workspace") return `workspace folder ${request.folder || ""}`.trim();
  return request.source || "";
}

export const OVERRIDES = [
  ["package_manager", "Package manager"],
  ["build_command", "Build command"],
  ["output_dir", "Output folder"],
  ["verify_path", "Verify path"],
  ["verify_text", "Verify text"],
];

const PHASES = ["queued", "building", "publishing", "verifying"];

/** How long a step took, or has been running so far. */
function stepDuration(step, now = Date.now()) {
  if (step.duration_ms != null) return formatDuration(step.duration_ms);
  const started = parseTime(step.started_at);
  if (started && !step.finished_at && step.status === "running") {
    return `${formatDuration(Math.max(0, now - started.getTime()))} so far`;
  }
  return "";
}

/** The time spent in each phase reached ("queued 0.4 s · building 5.1 s · …"). */
export function phasesText(deployment) {
  const durations = deployment.durations_ms || {};
  return PHASES.filter((phase) => durations[phase] != null || deployment[`${phase}_at`])
    .map((phase) => `${phase} ${durations[phase] != null ? formatDuration(durations[phase]) : "…"}`)
    .join(" · ");
}

export const describeDeployError = (error) =>
  error.status === 422
    ? `The request was refused: ${error.message}`
    : error.code === "not_configured"
      ? `Deployments are not configured here: ${error.message}`
      : error.status === 403
        ? `You may not deploy (${error.message}).`
        : error.message;

// --- the page ----------------------------------------------------------------------------------

/**
 * @param {HTMLElement} host
 * @param {{canDeploy: () => boolean}} options
 */
export function createDeploymentPage(host, { canDeploy }) {
  let deploymentId = null;
  let deployment = null;
  let readError = null;
  let logPanel = null;
  let canceling = false;
  let renderedSteps = "";
  let parts = null;
  let lastSite = null; // of the deployment shown last, kept when the page is hidden

  function build() {
    const back = h("a", { className: "back", href: "#/deployments" });
    back.innerHTML = icon("back");
    back.append(h("span", {}, "Deployments"));
    const title = h("h2", {}, h("span", { className: "deployment-site" }, "Deployment"), " ", h("code", { className: "run-id" }, deploymentId));
    const badge = h("span", { className: "run-status" });
    const eta = h("span", { className: "deploy-eta muted", hidden: true });
    const actions = h("div", { className: "run-actions" });
    const error = h("p", { className: "run-error", role: "alert", hidden: true });
    const facts = h("dl", { className: "run-facts" });
    const steps = h("ol", { className: "run-steps", "aria-label": "Steps" });
    logPanel = createLogPanel({ label: "Deployment log", empty: "The deployment wrote no log lines." });
    parts = { back, title, badge, eta, actions, error, facts, steps };
    host.replaceChildren(
      h("div", { className: "run-view deployment-view" },
        back,
        h("div", { className: "run-head" }, title, badge, eta, h("span", { className: "spacer" }), actions),
        error,
        facts,
        h("h3", {}, "Steps"),
        steps,
        logPanel.elements,
      ),
    ); // fmt: skip
  }

  function render() {
    if (!parts || !deploymentId) return;
    const { back, title, badge, eta, error } = parts;
    if (!deployment) {
      badge.replaceChildren();
      parts.actions.replaceChildren();
      parts.facts.replaceChildren();
      error.textContent = readError ? `The deployment could not be read: ${readError}` : "";
      error.hidden = !readError;
      if (!readError) parts.facts.append(h("dd", { className: "muted" }, "Reading the deployment…"));
      return;
    }
    const d = deployment;
    back.href = siteHash(d.site);
    back.lastChild.textContent = d.site;
    title.firstChild.textContent = d.site;
    badge.replaceChildren(statusBadge(d.status));
    const left = FINAL.has(d.status) ? null : etaText(d.estimate);
    eta.textContent = left || "";
    eta.hidden = !left;
    const problems = [];
    if (d.error) problems.push(d.error);
    else if (d.status === "superseded") problems.push("A newer deployment of the site was asked for before this one started.");
    if (readError) problems.push(`The deployment could not be refreshed: ${readError}`);
    error.textContent = problems.join(" · ");
    error.hidden = !problems.length;
    // A cancel, or a newer request, is what someone asked for: not a failure.
    error.classList.toggle("note", (d.status === "canceled" || d.status === "superseded") && !readError);
    renderFacts();
    renderActions();
    renderSteps();
    logPanel.setSteps((d.steps || []).map((s) => s.name));
  }

  function renderFacts() {
    const d = deployment;
    const request = d.request || {};
    const pairs = [
      ["Site", h("span", {}, h("a", { href: siteHash(d.site) }, d.site), d.live ? h("span", { className: "tag live-tag" }, "live now") : null)],
      [
        "Trigger",
        h(
          "span",
          { className: "deploy-trigger" },
          d.trigger,
          d.trigger === "rollback" && request.rollback_to ? [" to ", deploymentLink(request.rollback_to)] : null,
          d.delivery_id ? h("span", { className: "muted" }, ` (delivery ${d.delivery_id})`) : null,
        ),
      ],
      ["Requested", h("span", {}, time(d.queued_at), d.requested_by ? ` by ${d.requested_by}` : "")],
      ["Source", d.trigger === "rollback" ? h("span", { className: "muted" }, "the artifact of an earlier deployment (no build)") : h("code", {}, sourceText(request))],
    ];
    const overrides = OVERRIDES.filter(([key]) => request[key]).map(([key, label]) => h("code", { dataset: { field: key } }, `${label.toLowerCase()} = ${request[key]}`));
    if (overrides.length) pairs.push(["Options", h("span", { className: "run-params" }, overrides)]);
    pairs.push([
      "Commit",
      h(
        "span",
        { className: "deploy-commit" },
        d.commit_sha || request.source !== "workspace" || d.trigger === "rollback" ? commitCode(d.commit_sha) : h("span", { className: "muted" }, "none (a workspace folder)"),
      ),
    ]);
    pairs.push(["Phases", h("span", { className: "deploy-phases" }, phasesText(d) || "—")]);
    pairs.push([
      "Total",
      h("span", { className: "run-duration" }, d.total_ms != null ? formatDuration(d.total_ms) : FINAL.has(d.status) ? "—" : `${formatDuration(Math.max(0, Date.now() - (parseTime(d.queued_at)?.getTime() ?? Date.now())))} so far`),
    ]);
    if (d.finished_at) pairs.push(["Finished", h("span", { title: absoluteTime(d.finished_at) }, absoluteTime(d.finished_at))]);
    if (d.superseded_by) pairs.push(["Superseded by", deploymentLink(d.superseded_by)]);
    if (d.artifact) pairs.push(["Artifact", h("code", { title: `zip sha256 ${d.artifact.sha256}` }, `content ${String(d.artifact.content_sha256).slice(0, 12)}`)]);
    if (d.url) {
      pairs.push(["URL", h("a", { href: d.url, target: "_blank", rel: "noopener", className: "site-url" }, d.url)]);
    }
    parts.facts.replaceChildren(...pairs.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
  }

  function renderActions() {
    const d = deployment;
    const items = [];
    if (d.status === "succeeded" && d.url) {
      const open = h("a", { className: "button", href: d.url, target: "_blank", rel: "noopener", id: "deployment-open-site" });
      open.innerHTML = icon("link");
      open.append(d.live ? "Open the live site" : "Open the site");
      items.push(open);
    }
    if (canDeploy()) {
      if (d.can_cancel) {
        const cancel = h("button", { type: "button", className: "danger", id: "deployment-cancel", disabled: canceling });
        cancel.innerHTML = icon("stop");
        cancel.append(canceling ? "Canceling…" : "Cancel");
        cancel.addEventListener("click", () => cancel_(cancel));
        items.push(cancel);
      }
      if (FINAL.has(d.status)) {
        const retry = h("button", { type: "button", id: "deployment-retry", title: "Deploy the same inputs again" });
        retry.innerHTML = icon("refresh");
        retry.append("Retry");
        retry.addEventListener("click", () => retry_(retry));
        items.push(retry);
      }
    }
    // Replace only when the buttons change, so a click in flight keeps its button.
    const key = items.map((b) => `${b.id}:${b.textContent}:${b.disabled}:${b.href || ""}`).join();
    if (parts.actions.dataset.key !== key) {
      parts.actions.dataset.key = key;
      parts.actions.replaceChildren(...items);
    }
  }

  function renderSteps() {
    const now = Date.now();
    const steps = deployment.steps || [];
    const key = JSON.stringify(steps) + steps.map((s) => stepDuration(s, now)).join();
    if (key === renderedSteps) return;
    renderedSteps = key;
    const rows = steps.map((step) =>
      h(
        "li",
        { className: `run-step ${step.status}`, dataset: { step: step.name, status: step.status } },
        h(
          "div",
          { className: "step-line" },
          statusBadge(step.status),
          h("span", { className: "step-name" }, step.name),
          h("span", { className: "spacer" }),
          h("span", { className: "step-duration" }, stepDuration(step, now)),
        ),
      ),
    );
    parts.steps.replaceChildren(...(rows.length ? rows : [h("li", { className: "muted" }, "No steps yet.")]));
  }

  // --- reading the deployment ---

  const follower = createFollower({
    read: (id) => api.getDeployment(id),
    isFinal: (record) => FINAL.has(record.status),
    onRecord: (record) => {
      deployment = record;
      readError = null;
      lastSite = deployment.site;
      render();
    },
    onError: (error) => {
      readError = error.message;
      render();
    },
    pollMs: POLL_MS,
    retryMs: RETRY_MS,
  });

  async function cancel_(button) {
    if (canceling) return;
    canceling = true;
    button.disabled = true;
    const id = deploymentId;
    try {
      const answer = await api.cancelDeployment(id);
      if (id === deploymentId && answer && answer.id === id) deployment = answer;
      toast("Cancel requested: the deployment stops before it publishes.", { timeout: 3000 });
    } catch (error) {
      showError(error, error.status === 409 ? "Too late to cancel" : "Could not cancel the deployment");
    } finally {
      canceling = false;
      if (id === deploymentId) render();
    }
  }

  async function retry_(button) {
    button.disabled = true;
    try {
      const answer = await api.retryDeployment(deploymentId);
      location.hash = deploymentHash(answer.deployment.id);
    } catch (error) {
      showError(new Error(describeDeployError(error)), "Could not retry the deployment");
      button.disabled = false;
    }
  }

  function show(id) {
    host.hidden = false;
    if (id === deploymentId && parts) return;
    hide();
    host.hidden = false;
    deploymentId = id;
    build();
    render();
    follower.start(id);
    logPanel.follow({ url: (after) => api.deploymentLogsUrl(id, after), read: (after) => api.getDeploymentLogs(id, after) });
  }

  function hide() {
    follower.stop();
    logPanel?.stop();
    logPanel = null;
    deploymentId = null;
    deployment = null;
    readError = null;
    canceling = false;
    renderedSteps = "";
    parts = null;
    host.replaceChildren();
    host.hidden = true;
  }

  return {
    show,
    hide,
    render: () => render(),
    /** The site of the deployment shown (or shown last). */
    site: () => deployment?.site || lastSite,
  };
}
