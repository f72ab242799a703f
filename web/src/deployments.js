// The Deployments view: every site with its state, what it serves and its continuous-deployment
// binding; a site's history with a way back to any earlier good version; a form to deploy a
// workspace folder or a git repository; and one deployment's page (deployview.js).
// Its routes are hashes, so a page can be linked and survives a reload:
//   #/deployments         the sites, and the recent deployments of all of them
//   #/sites/NAME          the sites with NAME selected (its facts, binding and history)
//   #/deployments/ID      one deployment
// Deploying, canceling, retrying, rolling back and binding need the admin role; everyone else
// sees the same pages without those controls.
import * as api from "./api.js";
import { paragraphs, sentence, showDialog } from "./dialogs.js";
import { formatDuration, h, relativeTime, time } from "./dom.js";
import { icon } from "./icons.js";
import {
  commitCode,
  createDeploymentPage,
  deploymentHash,
  deploymentLink,
  describeDeployError,
  FINAL,
  OVERRIDES,
  phasesText,
  shortId,
  shortSha,
  siteHash,
  siteStateBadge,
  sourceText,
} from "./deployview.js";
import { statusBadge } from "./runview.js";
import { showError, toast } from "./toasts.js";

const HISTORY_LIMIT = 50;
const POLL_MS = 2000;
const PACKAGE_MANAGERS = ["npm", "yarn", "pnpm", "bun"];

/** `{page: "list", site}` or `{page: "deployment", id}` for a hash of this view. */
export function parseRoute(hash) {
  const [, kind, rest] = /^#\/(deployments|sites)(?:\/(.*))?$/.exec(hash || "") || [];
  const value = rest ? safeDecode(rest.replace(/\/+$/, "")) : null;
  if (kind === "deployments" && value) return { page: "deployment", id: value };
  return { page: "list", site: kind === "sites" ? value : null };
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The top-level folders of the workspace, to offer as what to deploy. */
async function workspaceFolders() {
  const tree = await api.getTree();
  return (tree.entries || []).filter((e) => e.type === "folder" && e.path && !e.path.includes("/")).map((e) => e.path);
}

// --- form pieces -------------------------------------------------------------------------------

let fieldCount = 0;

/** A labelled text field; `read()` is its trimmed value, or undefined when empty. */
function textField(name, label, { value = "", placeholder = "", required = false, list = null, help = null } = {}) {
  const id = `deploy-field-${++fieldCount}`;
  const input = h("input", {
    id,
    name,
    type: "text",
    value: value || "",
    placeholder,
    spellcheck: false,
    autocomplete: "off",
    "aria-required": required ? "true" : null,
  });
  if (list) input.setAttribute("list", list);
  const hint = help ? h("span", { className: "param-help", id: `${id}-help` }, help) : null;
  if (hint) input.setAttribute("aria-describedby", hint.id);
  const field = h(
    "div",
    { className: "param-field", dataset: { field: name } },
    h("label", { className: "param-label", for: id }, label, required ? h("span", { className: "required", title: "required" }, " *") : null),
    input,
    hint,
  );
  return { name, field, input, read: () => input.value.trim() || undefined };
}

/** The build options a deployment or a binding may set; all optional. */
function overrideFields(values = {}) {
  const id = `deploy-field-${++fieldCount}`;
  const select = h(
    "select",
    { id, name: "package_manager" },
    h("option", { value: "" }, "detect from the lock file"),
    PACKAGE_MANAGERS.map((pm) => h("option", { value: pm, selected: values.package_manager === pm }, pm)),
  );
  const manager = {
    name: "package_manager",
    input: select,
    field: h("div", { className: "param-field", dataset: { field: "package_manager" } }, h("label", { className: "param-label", for: id }, "Package manager"), select),
    read: () => select.value || undefined,
  };
  const fields = [
    manager,
    textField("build_command", "Build command", { value: values.build_command, placeholder: "from package.json (npm run build)" }),
    textField("output_dir", "Output folder", { value: values.output_dir, placeholder: "detected (dist, build, out, …)" }),
    textField("verify_path", "Verify path", { value: values.verify_path, placeholder: "/" }),
    textField("verify_text", "Verify text", { value: values.verify_text, placeholder: "text the page must contain" }),
  ];
  const set = fields.filter((f) => f.read()).length;
  const details = h(
    "details",
    { className: "deploy-options", open: set > 0 },
    h("summary", {}, "Build options", h("span", { className: "muted" }, set ? ` (${set} set)` : " (optional)")),
    h("div", { className: "param-fields" }, fields.map((f) => f.field)),
  );
  return { element: details, fields };
}

/** Show `error` in `box`, and mark the field the message names ("folder: is required…"). */
function showFormError(box, fields, error, describe) {
  box.textContent = describe(error);
  box.hidden = false;
  const named = /^([a-z_]+):/.exec(error.message || "");
  for (const f of fields) {
    const wrong = Boolean(named) && f.name === named[1];
    if (wrong) f.input.setAttribute("aria-invalid", "true");
    else f.input.removeAttribute("aria-invalid");
    if (wrong) f.field.closest("details")?.setAttribute("open", "");
  }
}

function clearFormError(box, fields) {
  box.hidden = true;
  for (const f of fields) f.input.removeAttribute("aria-invalid");
}

/**
 * The deploy form. `preset` fills it in (a site's last request); `onDeploy(body)` resolves when
 * the deployment was queued.
 */
function deployForm({ preset = {}, siteNames = [], folders = null, onDeploy, onClose }) {
  const site = textField("site", "Site", { value: preset.site, required: true, list: "deploy-sites", placeholder: "my-site", help: "Lowercase letters, digits and hyphens. A new name makes a new site." });
  const sitesList = h("datalist", { id: "deploy-sites" }, siteNames.map((name) => h("option", { value: name })));
  const foldersList = h("datalist", { id: "deploy-folders" }, (folders || []).map((name) => h("option", { value: name })));
  const folder = textField("folder", "Folder", {
    value: preset.source !== "git" ? preset.folder : "",
    list: "deploy-folders",
    placeholder: folders && folders.length ? folders[0] : "site",
    help: "A folder of the workspace.",
  });
  const repository = textField("repository", "Repository URL", {
    value: preset.source === "git" ? preset.repository : "",
    placeholder: "https://github.com/owner/repo.git",
  });
  const ref = textField("ref", "Branch, tag or commit", { value: preset.source === "git" ? preset.ref : "", placeholder: "the default branch" });
  const subfolder = textField("folder", "Folder", { value: preset.source === "git" ? preset.folder : "", placeholder: "the repository root" });
  const overrides = overrideFields(preset);

  const sourceName = `deploy-source-${++fieldCount}`;
  const radio = (value, label) => {
    const input = h("input", { type: "radio", name: sourceName, value, checked: (preset.source || "workspace") === value });
    return { input, label: h("label", { className: "source-choice" }, input, label) };
  };
  const fromWorkspace = radio("workspace", "Workspace folder");
  const fromGit = radio("git", "Git repository");
  const workspaceFields = h("div", { className: "param-fields source-fields", dataset: { source: "workspace" } }, folder.field);
  const gitFields = h("div", { className: "param-fields source-fields", dataset: { source: "git" } }, repository.field, ref.field, subfolder.field);
  const source = () => (fromGit.input.checked ? "git" : "workspace");
  const showSource = () => {
    workspaceFields.hidden = source() !== "workspace";
    gitFields.hidden = source() !== "git";
  };
  fromWorkspace.input.addEventListener("change", showSource);
  fromGit.input.addEventListener("change", showSource);
  showSource();

  const error = h("p", { className: "form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", className: "primary" });
  submit.innerHTML = icon("play");
  submit.append("Deploy");
  const close = h("button", { type: "button" }, "Close");
  close.addEventListener("click", onClose);
  const form = h(
    "form",
    { className: "run-form deploy-form", noValidate: true, "aria-label": "Deploy a site" },
    h("h4", {}, "Deploy"),
    h("div", { className: "param-fields" }, site.field),
    sitesList,
    foldersList,
    h("fieldset", { className: "source-picker" }, h("legend", {}, "Source"), fromWorkspace.label, fromGit.label),
    workspaceFields,
    gitFields,
    overrides.element,
    error,
    h("div", { className: "form-buttons" }, close, submit),
  );
  const all = () => [site, ...(source() === "git" ? [repository, ref, subfolder] : [folder]), ...overrides.fields];
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { source: source() };
    for (const f of all()) {
      const value = f.read();
      if (value !== undefined) body[f.name] = value;
    }
    body.site = site.input.value.trim();
    clearFormError(error, all());
    submit.disabled = true;
    form.classList.add("busy");
    try {
      await onDeploy(body);
    } catch (failure) {
      showFormError(error, all(), failure, describeDeployError);
    } finally {
      submit.disabled = false;
      form.classList.remove("busy");
    }
  });
  return form;
}

/** The binding form: a branch, a folder and build options; `onSave(body)` resolves to the site. */
function bindingForm(site, binding, { onSave, onClose }) {
  const branch = textField("branch", "Branch", { value: binding?.branch || "", required: true, placeholder: "main" });
  const folder = textField("folder", "Folder", { value: binding?.folder || "", placeholder: "the repository root" });
  const overrides = overrideFields(binding || {});
  const fields = [branch, folder, ...overrides.fields];
  const error = h("p", { className: "form-error", role: "alert", hidden: true });
  const save = h("button", { type: "submit", className: "primary" }, "Save binding");
  const close = h("button", { type: "button" }, "Cancel");
  close.addEventListener("click", onClose);
  const form = h(
    "form",
    { className: "run-form binding-form", noValidate: true, "aria-label": `Continuous deployment of ${site}` },
    h("p", { className: "muted small" }, "Each push to the branch of the connected GitHub repository deploys the folder to this site."),
    h("div", { className: "param-fields" }, branch.field, folder.field),
    overrides.element,
    error,
    h("div", { className: "form-buttons" }, close, save),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const f of fields) {
      const value = f.read();
      if (value !== undefined) body[f.name] = value;
    }
    if (body.branch === undefined) body.branch = "";
    clearFormError(error, fields);
    save.disabled = true;
    form.classList.add("busy");
    try {
      await onSave(body);
    } catch (failure) {
      showFormError(error, fields, failure, (e) => (e.status === 422 ? `The binding was refused: ${e.message}` : e.status === 403 ? `You may not bind sites (${e.message}).` : e.message));
    } finally {
      save.disabled = false;
      form.classList.remove("busy");
    }
  });
  return form;
}

// --- pieces of the list page -------------------------------------------------------------------

function bindingText(binding) {
  if (!binding) return null;
  return h(
    "span",
    { className: "site-binding-text" },
    "Deploys pushes to ",
    h("code", {}, binding.branch),
    binding.folder ? [" from ", h("code", {}, binding.folder)] : null,
  );
}

function siteItem(site, selected) {
  const last = site.last_deployment;
  const live = site.live_deployment_id
    ? h("div", { className: "site-live" }, "Live: ", deploymentLink(site.live_deployment_id), site.live_commit_sha ? [" · ", commitCode(site.live_commit_sha)] : null, site.live_since ? [" · ", time(site.live_since)] : null)
    : h("div", { className: "site-live muted" }, "Nothing live yet");
  return h(
    "li",
    { className: `site-item${selected ? " selected" : ""}`, dataset: { site: site.site, state: site.state } },
    h(
      "div",
      { className: "site-item-head" },
      h("a", { className: "site-name", href: siteHash(site.site), "aria-current": selected ? "true" : null }, site.site),
      siteStateBadge(site.state),
    ),
    live,
    site.live_url ? h("a", { className: "site-url", href: site.live_url, target: "_blank", rel: "noopener" }, site.live_url) : null,
    site.binding ? h("div", { className: "site-binding" }, bindingText(site.binding)) : null,
    last
      ? h("div", { className: "site-last" }, "Last: ", statusBadge(last.status), " ", deploymentLink(last.id), " ", time(last.finished_at || last.queued_at))
      : null,
  );
}

/** How long a deployment took (or "…"), with the build and publish times under it. */
function durationCell(d) {
  const unfinished = !FINAL.has(d.status);
  const durations = d.durations_ms || {};
  const publish = durations.publishing != null || durations.verifying != null ? (durations.publishing ?? 0) + (durations.verifying ?? 0) : null;
  const phases = [];
  if (durations.building != null) phases.push(`build ${formatDuration(durations.building)}`);
  if (publish != null) phases.push(`publish ${formatDuration(publish)}`);
  return h(
    "td",
    { className: "num took", title: phasesText(d) },
    h("span", { className: "total" }, d.total_ms != null ? formatDuration(d.total_ms) : unfinished ? "…" : ""),
    phases.length ? h("span", { className: "phase-times" }, phases.flatMap((text, i) => [i ? " · " : null, h("span", {}, text)])) : null,
  );
}

/**
 * `liveContent(site)`: the content hash of the files the site serves now, so a deployment
 * whose files are live already (the one a rollback republished) offers no way back to itself.
 */
function historyTable(deployments, { showSite, canRollBack, onRollBack, liveContent }) {
  const rows = deployments.map((d) => {
    const actions = [];
    const filesLive = Boolean(d.artifact) && !d.live && d.artifact.content_sha256 === liveContent(d.site);
    if (filesLive) {
      actions.push(h("span", { className: "muted small files-live", title: "A later deployment republished these files: the site serves them now" }, "files live"));
    } else if (canRollBack && d.status === "succeeded" && d.artifact && !d.live) {
      const button = h("button", { type: "button", className: "rollback", title: `Publish this deployment's files again (commit ${shortSha(d.commit_sha) || "unknown"})` }, "Roll back to this");
      button.addEventListener("click", () => onRollBack(d, button));
      actions.push(button);
    }
    return h(
      "tr",
      { className: `deployment-row status-${d.status}${d.live ? " live" : ""}`, dataset: { deployment: d.id, status: d.status } },
      h("td", {}, statusBadge(d.status)),
      h("td", { className: "nowrap" }, deploymentLink(d.id), d.live ? h("span", { className: "tag live-tag", title: "The site serves this deployment now" }, "live") : null),
      showSite ? h("td", { className: "nowrap" }, h("a", { href: siteHash(d.site) }, d.site)) : null,
      h("td", {}, commitCode(d.commit_sha)),
      h(
        "td",
        { className: "trigger" },
        h("span", {}, d.trigger, d.trigger === "rollback" && d.request?.rollback_to ? h("span", { className: "muted" }, ` to ${shortId(d.request.rollback_to)}`) : null),
        d.requested_by ? h("span", { className: "by" }, `by ${d.requested_by}`) : null,
      ),
      h("td", { className: "when" }, time(d.queued_at)),
      durationCell(d),
      h("td", { className: "actions" }, actions),
    );
  });
  const table = h(
    "table",
    { className: "runs-table deployments-table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "Status"),
        h("th", {}, "Deployment"),
        showSite ? h("th", {}, "Site") : null,
        h("th", {}, "Commit"),
        h("th", {}, "Trigger"),
        h("th", {}, "Queued"),
        h("th", { className: "num", title: "from the request to the end, waiting included; build: checkout to package; publish: publish and verify" }, "Took"),
        h("th", {}, ""),
      ),
    ),
    h("tbody", {}, rows),
  );
  return h("div", { className: "table-scroll" }, table);
}

// --- the view ---------------------------------------------------------------------------------

/**
 * @param {{isAdmin: () => boolean}} options
 */
export function createDeploymentsView({ isAdmin }) {
  const listPage = document.getElementById("deployments-page");
  const listHost = document.getElementById("site-list");
  const detailHost = document.getElementById("site-detail");
  const formHost = document.getElementById("deploy-form-host");
  const newButton = document.getElementById("deployments-new");
  const deploymentPage = createDeploymentPage(document.getElementById("deployment-page"), { canDeploy: isAdmin });

  let route = { page: "list", site: null };
  let lastSite = null;
  let visible = false;
  let sites = null;
  let sitesError = null;
  let sitesJson = "";
  let sitesToken = 0;
  let sitesTimer = null;
  let history = { key: null, deployments: null, error: null, json: "" };
  let historyTimer = null;
  let historyToken = 0;
  let form = null; // {preset} while the deploy form is open
  let folders = null;
  let editingBinding = false;
  let renderedDetail = "";
  let renderedSummary = "";
  let renderedBinding = "";

  const selected = () => (sites || []).find((s) => s.site === route.site) || null;

  async function deploy(body) {
    const answer = await api.startDeployment(body);
    form = null;
    formHost.replaceChildren();
    location.hash = deploymentHash(answer.deployment.id);
    return answer;
  }

  // --- the deploy form ---

  function openForm(preset) {
    if (!isAdmin()) return;
    form = { preset };
    renderForm();
    if (folders === null) {
      workspaceFolders().then(
        (names) => {
          folders = names;
          // Offered as suggestions: the open form gets them without losing what was typed.
          const list = formHost.querySelector("#deploy-folders");
          list?.replaceChildren(...names.map((name) => h("option", { value: name })));
        },
        () => (folders = []),
      );
    }
    formHost.querySelector("input[name=site]")?.focus();
  }

  function closeForm() {
    form = null;
    renderForm();
  }

  function renderForm() {
    newButton.hidden = !isAdmin();
    if (!form || !isAdmin()) {
      formHost.replaceChildren();
      return;
    }
    formHost.replaceChildren(
      deployForm({
        preset: form.preset,
        siteNames: (sites || []).map((s) => s.site),
        folders,
        onDeploy: deploy,
        onClose: closeForm,
      }),
    );
  }

  /** What the form starts with for `site`: its last request, if it was one the form can ask for. */
  function presetFor(site) {
    const last = site?.last_deployment;
    const request = last && last.trigger !== "rollback" ? last.request || {} : {};
    return { ...request, site: site?.site || route.site || "" };
  }

  // --- the list of sites ---

  function renderList(force = false) {
    const json = JSON.stringify([sites, sitesError, route.site]);
    if (!force && json === sitesJson) {
      for (const t of listHost.querySelectorAll("time")) t.textContent = relativeTime(t.dateTime);
      return;
    }
    sitesJson = json;
    if (sitesError && !sites) {
      listHost.replaceChildren(h("li", { className: "list-note failed", role: "alert" }, `The sites could not be read: ${sitesError}`));
      return;
    }
    if (!sites) {
      listHost.replaceChildren(h("li", { className: "list-note" }, "Reading the sites…"));
      return;
    }
    const items = sites.map((s) => siteItem(s, s.site === route.site));
    if (!items.length) {
      items.push(h("li", { className: "list-note" }, isAdmin() ? "No sites yet. Press Deploy… to publish a folder of the workspace as a site." : "No sites yet."));
    }
    if (sitesError) items.unshift(h("li", { className: "list-note failed", role: "alert" }, `The sites could not be refreshed: ${sitesError}`));
    listHost.replaceChildren(...items);
  }

  async function refreshSites() {
    const mine = ++sitesToken;
    clearTimeout(sitesTimer);
    try {
      const answer = await api.getSites();
      if (mine !== sitesToken) return;
      sites = answer.sites || [];
      sitesError = null;
    } catch (error) {
      if (mine !== sitesToken) return;
      sitesError = error.message;
    }
    renderList();
    renderDetail();
    renderHistory();
    if (visible && route.page === "list" && (sitesError || sites.some((s) => s.state === "DEPLOYING"))) {
      sitesTimer = setTimeout(refreshSites, sitesError ? POLL_MS * 3 : POLL_MS);
    }
  }

  // --- the selected site ---

  function renderDetail(force = false) {
    const key = JSON.stringify([route.site, Boolean(sites), Boolean(selected()), isAdmin()]);
    if (force || key !== renderedDetail) {
      renderedDetail = key;
      renderedSummary = "";
      renderedBinding = "";
      const parts = [];
      if (!route.site) {
        parts.push(h("div", { className: "detail-head" }, h("h3", {}, "Recent deployments"), h("span", { className: "muted" }, "of every site · select a site for its history")));
      } else {
        parts.push(h("div", { id: "site-summary" }));
        parts.push(h("div", { id: "site-binding", className: "site-binding-section" }));
        parts.push(h("h3", { className: "history-title" }, "History"));
      }
      parts.push(h("div", { id: "site-history", className: "history" }));
      detailHost.replaceChildren(...parts);
      renderHistory(true);
    }
    renderSummary();
    renderBinding();
  }

  function renderSummary() {
    const host = detailHost.querySelector("#site-summary");
    if (!host) return;
    const site = selected();
    const key = JSON.stringify([route.site, site, Boolean(sites), isAdmin()]);
    if (key === renderedSummary) {
      for (const t of host.querySelectorAll("time")) t.textContent = relativeTime(t.dateTime);
      return;
    }
    renderedSummary = key;
    const head = h(
      "div",
      { className: "detail-head" },
      h("h3", {}, route.site),
      site ? siteStateBadge(site.state) : null,
      site?.live_url ? h("a", { className: "site-url", href: site.live_url, target: "_blank", rel: "noopener", id: "site-live-link" }, site.live_url) : null,
    );
    if (!site) {
      host.replaceChildren(head, sites ? h("p", { className: "detail-note muted" }, `No site named ${route.site} has been deployed yet.`) : null);
      return;
    }
    const last = site.last_deployment;
    const pairs = [
      [
        "Live",
        site.live_deployment_id
          ? h("span", {}, deploymentLink(site.live_deployment_id), site.live_commit_sha ? [" · commit ", commitCode(site.live_commit_sha)] : null, site.live_since ? [" · since ", time(site.live_since)] : null)
          : h("span", { className: "muted" }, "nothing yet"),
      ],
      ["Last deployment", last ? h("span", {}, statusBadge(last.status), " ", deploymentLink(last.id), ` · ${last.trigger} by ${last.requested_by || "?"} · `, time(last.queued_at)) : h("span", { className: "muted" }, "none")],
    ];
    if (last && last.request && last.trigger !== "rollback") pairs.push(["Source", h("code", {}, sourceText(last.request))]);
    if (site.state === "DEPLOYMENT_FAILED" && site.live_deployment_id) {
      pairs.push(["Note", h("span", { className: "failed" }, "The last deployment failed; the site still serves the live deployment above.")]);
    }
    host.replaceChildren(head, h("dl", { className: "run-facts site-facts" }, pairs.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])));
  }

  function renderBinding() {
    const host = detailHost.querySelector("#site-binding");
    if (!host) return;
    const site = selected();
    const key = JSON.stringify([route.site, site?.binding ?? null, Boolean(site), isAdmin(), editingBinding]);
    if (key === renderedBinding) return;
    renderedBinding = key;
    if (!site && !isAdmin()) {
      host.replaceChildren();
      return;
    }
    const parts = [h("h3", {}, "Continuous deployment")];
    if (editingBinding && isAdmin()) {
      parts.push(
        bindingForm(route.site, site?.binding, {
          onSave: async (body) => {
            const updated = await api.putBinding(route.site, body);
            editingBinding = false;
            replaceSite(updated);
            toast(`${route.site} now deploys pushes to ${updated.binding?.branch ?? body.branch}.`, { timeout: 3000 });
          },
          onClose: () => {
            editingBinding = false;
            renderBinding();
          },
        }),
      );
      host.replaceChildren(...parts);
      host.querySelector("input")?.focus();
      return;
    }
    const binding = site?.binding;
    const facts = [];
    if (binding) {
      facts.push(h("p", { className: "binding-summary" }, bindingText(binding)));
      const options = OVERRIDES.filter(([name]) => binding[name]).map(([name, label]) => h("code", { dataset: { field: name } }, `${label.toLowerCase()} = ${binding[name]}`));
      if (options.length) facts.push(h("p", { className: "run-params" }, options));
    } else {
      facts.push(h("p", { className: "muted binding-summary" }, "Not bound: pushes deploy nothing to this site."));
    }
    parts.push(...facts);
    if (isAdmin()) {
      const edit = h("button", { type: "button", id: "binding-edit" }, binding ? "Change binding…" : "Bind to a branch…");
      edit.addEventListener("click", () => {
        editingBinding = true;
        renderBinding();
      });
      const buttons = [edit];
      if (binding) {
        const remove = h("button", { type: "button", id: "binding-remove" }, "Remove binding");
        remove.addEventListener("click", () => unbind(remove));
        buttons.push(remove);
      }
      parts.push(h("div", { className: "detail-actions" }, buttons));
    }
    host.replaceChildren(...parts);
  }

  async function unbind(button) {
    button.disabled = true;
    const name = route.site;
    try {
      replaceSite(await api.deleteBinding(name));
      toast(`Pushes no longer deploy ${name}.`, { timeout: 3000 });
    } catch (error) {
      showError(error, `Could not remove the binding of ${name}`);
      button.disabled = false;
    }
  }

  function replaceSite(updated) {
    if (!updated || !updated.site) return;
    const list = sites || [];
    const at = list.findIndex((s) => s.site === updated.site);
    sites = at >= 0 ? list.map((s, i) => (i === at ? updated : s)) : [...list, updated];
    renderList();
    renderDetail();
  }

  // --- history ---

  /** The content hash of what `site` serves now: from the sites list, else its live row. */
  function liveContent(site) {
    const record = (sites || []).find((s) => s.site === site);
    if (record && record.live_artifact) return record.live_artifact.content_sha256;
    const live = (history.deployments || []).find((d) => d.site === site && d.live);
    return live?.artifact?.content_sha256 ?? null;
  }

  function renderHistory(force = false) {
    const host = detailHost.querySelector("#site-history");
    if (!host) return;
    const key = route.site || "";
    if (history.key !== key) {
      host.replaceChildren(h("p", { className: "muted" }, "Reading the deployments…"));
      return;
    }
    const json = JSON.stringify([history.deployments, history.error, isAdmin(), (sites || []).map((s) => [s.site, s.live_artifact?.content_sha256])]);
    if (!force && json === history.json) {
      for (const t of host.querySelectorAll("time")) t.textContent = relativeTime(t.dateTime);
      return;
    }
    history.json = json;
    if (history.error && !history.deployments) {
      host.replaceChildren(h("p", { className: "failed" }, `The deployments could not be read: ${history.error}`));
    } else if (!history.deployments.length) {
      host.replaceChildren(h("p", { className: "muted" }, "No deployments yet."));
    } else {
      host.replaceChildren(
        history.error ? h("p", { className: "failed" }, `The deployments could not be refreshed: ${history.error}`) : "",
        historyTable(history.deployments, { showSite: !route.site, canRollBack: isAdmin(), onRollBack: rollBack, liveContent }),
      );
    }
  }

  async function refreshHistory() {
    const key = route.site || "";
    const mine = ++historyToken;
    clearTimeout(historyTimer);
    let deployments = null;
    let error = null;
    try {
      deployments = (await api.getDeployments({ site: route.site || undefined, limit: HISTORY_LIMIT })).deployments || [];
    } catch (failure) {
      error = failure.message;
    }
    if (mine !== historyToken) return;
    if (history.key !== key) history = { key, deployments: null, error: null, json: "" };
    if (deployments) history.deployments = deployments;
    history.error = error;
    renderHistory();
    // While a listed deployment is still going, keep its row (and the site's state) current.
    const going = deployments && deployments.some((d) => !FINAL.has(d.status));
    if (visible && route.page === "list" && (error || going)) {
      historyTimer = setTimeout(() => {
        refreshHistory();
        if (going) refreshSites();
      }, error ? POLL_MS * 3 : POLL_MS);
    } else if (visible && route.page === "list" && deployments && history.wasGoing) {
      refreshSites(); // the last one just ended: the site's state changed with it
    }
    history.wasGoing = Boolean(going);
  }

  async function rollBack(deployment, button) {
    const site = deployment.site;
    const choice = await showDialog({
      title: `Roll back ${site}`,
      message: paragraphs(
        sentence("Publish the files of deployment ", { strong: shortId(deployment.id) }, deployment.commit_sha ? " (commit " : "", deployment.commit_sha ? { strong: shortSha(deployment.commit_sha) } : "", deployment.commit_sha ? ")" : "", " to ", { strong: site }, " again?"),
        sentence("Nothing is built: its artifact is published and verified as a new deployment."),
      ),
      buttons: [
        { label: "Cancel", value: "cancel" },
        { label: "Roll back", value: "rollback", kind: "primary", focus: true, run: () => api.rollbackSite(site, deployment.id) },
      ],
    });
    if (!choice) return;
    button.disabled = true;
    location.hash = deploymentHash(choice.result.deployment.id);
  }

  // --- routing ---

  function show(hash) {
    const next = parseRoute(hash);
    if (next.site !== route.site) editingBinding = false;
    route = next;
    listPage.hidden = route.page !== "list";
    if (route.page === "deployment") {
      clearTimeout(historyTimer);
      clearTimeout(sitesTimer);
      historyToken++;
      sitesToken++;
      deploymentPage.show(route.id);
      return;
    }
    deploymentPage.hide();
    lastSite = route.site;
    if (form && route.site && form.preset.site !== route.site) {
      form = null; // a form for another site
    }
    renderForm();
    renderList(true);
    renderDetail();
    refreshSites();
    refreshHistory();
  }

  function setVisible(value, hash) {
    visible = value;
    if (visible) {
      show(hash);
    } else {
      clearTimeout(historyTimer);
      clearTimeout(sitesTimer);
      historyToken++;
      sitesToken++;
      deploymentPage.hide();
    }
  }

  /** The roles were read (or changed): the controls depend on them. */
  function render() {
    if (!visible) return;
    if (route.page === "deployment") {
      deploymentPage.render();
      return;
    }
    renderForm();
    renderList(true);
    renderDetail();
    renderHistory(true);
  }

  newButton.addEventListener("click", () => openForm(presetFor(selected())));
  document.getElementById("deployments-refresh").addEventListener("click", async () => {
    await Promise.all([refreshSites(), refreshHistory()]);
    if (sitesError) showError(new Error(sitesError), "Could not refresh the sites");
  });

  return {
    setVisible,
    render,
    /** Where the tab goes back to: the site selected last, or the list. */
    lastHash: () => {
      const site = route.page === "deployment" ? deploymentPage.site() || lastSite : lastSite;
      return site ? siteHash(site) : "#/deployments";
    },
  };
}
