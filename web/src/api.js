// The Slipway API: every call goes through `request`, which turns any failure into an ApiError
// carrying the server's {"error": {"code", "message"}} (or a sentence about the network).
import { encodePath } from "./paths.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

const FILES = "/api/workspace/files/";

// --- signing in --------------------------------------------------------------------------------
// Behind a Static Web App the platform's sign-in cookie proves who the user is; anywhere else
// the user may give the deployment's API token. The token is kept in sessionStorage (it dies
// with the tab, never localStorage) and sent as `Authorization: Bearer` on every request; it
// never goes into a URL, so nothing that cannot send that header (EventSource, a plain link)
// is used while a token is in use.

const TOKEN_KEY = "slipway.apiToken";

/** The API token this tab signed in with, or "". */
export function apiToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return ""; // storage disabled: no token was kept
  }
}

/** True while requests authenticate with an API token (no event streams, no plain links). */
export const usesToken = () => Boolean(apiToken());

// Set once any answer says `X-Slipway-Streaming: buffered`: the API runs under the Functions
// host, whose ASGI bridge buffers whole responses, so it never streams (logs are polled).
let buffered = false;
export const canStream = () => !buffered;

export function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing was kept
  }
}

let unauthorizedHandler = null;

/**
 * `handler(error, {hadToken})` is called when the API answers 401 to a request sent with the
 * current credentials (a token that was refused has been forgotten by then). The error is
 * thrown to the caller as well, marked `signedOut`, so callers need not report it again.
 */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/**
 * Check `token` with GET /api/me; when accepted, keep it for this tab and resolve to the
 * principal. A refused token throws the API's 401 (`error.message` says why) and is not kept.
 */
export async function signInWithToken(token) {
  const value = token.trim();
  if (!value) throw new ApiError(0, "token_missing", "Enter the API token.");
  if (!/^[\x21-\x7e]+$/.test(value)) {
    throw new ApiError(0, "token_invalid", "An API token is made of letters, digits and punctuation, without spaces.");
  }
  const principal = await jsonOf(await request("GET", "/api/me", { token: value }));
  try {
    sessionStorage.setItem(TOKEN_KEY, value);
  } catch (error) {
    throw new ApiError(0, "storage", `The token is right, but this tab cannot keep it (${error.message}).`);
  }
  return principal;
}

/**
 * Whether the page is served by an Azure Static Web App: its `/.auth/me` answers
 * `{"clientPrincipal": ...}` (null when not signed in); anywhere else it is a 404.
 */
export async function staticWebApp() {
  try {
    const response = await fetch("/.auth/me", { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status !== 200) return false;
    const body = await response.json();
    return Boolean(body && typeof body === "object" && !Array.isArray(body) && "clientPrincipal" in body);
  } catch {
    return false;
  }
}

export const swaLoginUrl = (returnTo) => `/.auth/login/aad?post_login_redirect_uri=${encodeURIComponent(returnTo)}`;
export const swaLogoutUrl = "/.auth/logout";

// --- requests ----------------------------------------------------------------------------------

/**
 * `token`: check this token instead of the kept one; a 401 then is the caller's to report
 * (the sign-in form), not a sign-out.
 */
async function request(method, url, { headers = {}, body, json, alsoOk = [], token } = {}) {
  const init = { method, headers: { ...headers }, cache: "no-store", credentials: "same-origin" };
  const checking = token !== undefined;
  const sent = checking ? token : apiToken();
  if (sent) init.headers.Authorization = `Bearer ${sent}`;
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(
      0,
      "network",
      `The server could not be reached (${error.message}). Check the connection; if your sign-in has expired, reload the page.`,
    );
  }
  if (response.headers.get("X-Slipway-Streaming") === "buffered") buffered = true;
  if (response.status === 401 && !checking) throw await signedOut(response, sent);
  if (!response.ok && !alsoOk.includes(response.status)) throw await errorOf(response);
  return response;
}

async function signedOut(response, sent) {
  const error = await errorOf(response);
  error.signedOut = true;
  // Only the credentials still in use are dropped: a request that left before the user signed
  // in again (or out) says nothing about the new ones.
  if (sent === apiToken()) {
    if (sent) forgetToken();
    unauthorizedHandler?.(error, { hadToken: Boolean(sent) });
  }
  return error;
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`.trim();
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    } else if (body && typeof body.detail === "string") {
      message = body.detail;
    } else if (body && Array.isArray(body.detail)) {
      message = body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    }
  } catch {
    // Not JSON (a proxy's or the platform's page): keep the status line.
  }
  return new ApiError(response.status, code, message);
}

async function jsonOf(response) {
  try {
    return await response.json();
  } catch {
    throw new ApiError(
      response.status,
      "bad_response",
      `${response.url} did not answer with JSON (a sign-in page?). Reload the page to sign in again.`,
    );
  }
}

export const fileUrl = (path, { download = false } = {}) =>
  FILES + encodePath(path) + (download ? "?download=true" : "");

export const archiveUrl = "/api/workspace/archive";

/** The file name of a Content-Disposition header (`filename*=UTF-8''…` or `filename="…"`). */
function dispositionName(header) {
  if (!header) return "";
  const extended = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(header);
  if (extended) {
    try {
      return decodeURIComponent(extended[1].trim());
    } catch {
      // fall through to the plain name
    }
  }
  const plain = /filename\s*=\s*(?:"([^"]*)"|([^;]+))/.exec(header);
  return plain ? (plain[1] ?? plain[2]).trim() : "";
}

/**
 * Download an API address (a file, the workspace zip) with the request's credentials and save
 * what it answers: a plain link cannot send the token. Resolves to the saved name.
 */
export async function download(url, name = "") {
  const response = await request("GET", url);
  const blob = await response.blob();
  const saveAs = dispositionName(response.headers.get("Content-Disposition")) || name || "download";
  const href = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = href;
  link.download = saveAs;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser has taken the blob once the click is handled; keep it a while for slow ones.
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
  return saveAs;
}

export async function getTree() {
  return jsonOf(await request("GET", "/api/workspace/tree"));
}

/** A file's bytes, its ETag and whether the server considers it text. */
export async function readFile(path) {
  const response = await request("GET", fileUrl(path));
  return {
    bytes: await response.arrayBuffer(),
    etag: response.headers.get("ETag"),
    text: (response.headers.get("X-Slipway-Text") || "true").toLowerCase() !== "false",
    contentType: response.headers.get("Content-Type") || "",
  };
}

/**
 * Create (`create: true`, If-None-Match: *) or update (`etag`, If-Match) a file.
 * Resolves to the file's entry as the tree lists it, with the new ETag.
 */
export async function writeFile(path, bytes, { etag, create = false } = {}) {
  const headers = { "Content-Type": "application/octet-stream" };
  if (create) headers["If-None-Match"] = "*";
  else if (etag) headers["If-Match"] = etag;
  const response = await request("PUT", fileUrl(path), { headers, body: bytes });
  const entry = await jsonOf(response);
  if (!entry.etag) entry.etag = response.headers.get("ETag");
  return entry;
}

export async function deleteEntry(path, { recursive = false, etag } = {}) {
  const headers = etag ? { "If-Match": etag } : {};
  await request("DELETE", fileUrl(path) + (recursive ? "?recursive=true" : ""), { headers });
}

export async function createFolder(path) {
  return jsonOf(await request("POST", "/api/workspace/folders", { json: { path } }));
}

export async function move(from, to) {
  return jsonOf(await request("POST", "/api/workspace/move", { json: { from, to } }));
}

export async function getMe() {
  return jsonOf(await request("GET", "/api/me"));
}

/** Detailed health; a failing check is a result to show, not an error. */
export async function getHealth() {
  const response = await request("GET", "/api/health/detailed", { alsoOk: [503] });
  const body = await jsonOf(response);
  if (!Array.isArray(body.checks)) {
    throw new ApiError(response.status, body.error?.code || "bad_response", body.error?.message || "No checks in the answer.");
  }
  return body;
}

// --- the GitHub connection ----------------------------------------------------------------------

/**
 * The connection (`{"connected": false, "sync"}` when there is none): repository, branch, `state`
 * ("connecting" until a connect's first sync finished), webhook (`reachable: false` with a
 * `message` when GitHub cannot deliver to its URL), last sync, snapshots, and `sync`: what
 * syncing does now (`{"state": "running"|"waiting"|"idle", "running", "waiting", "waiting_since",
 * "last_pass"}`).
 */
export async function getGithub() {
  return jsonOf(await request("GET", "/api/github"));
}

/**
 * Check (`dry_run: true`: what connecting would add, overwrite and delete) or connect and sync.
 * The token travels in this one request body and is kept nowhere in the browser.
 */
export async function connectGithub({ repository, branch, token, dryRun }) {
  return jsonOf(
    await request("POST", "/api/github/connect", { json: { repository, branch, token, dry_run: dryRun } }),
  );
}

export async function disconnectGithub() {
  return jsonOf(await request("POST", "/api/github/disconnect"));
}

/**
 * Queue a sync of the connected branch now (202 `{"queued": true}`); behind a running sync also
 * `waiting_for` (what runs) and a `message` saying so.
 */
export async function syncGithub() {
  return jsonOf(await request("POST", "/api/github/sync"));
}

/**
 * Stop the running sync at its next phase and drop the waiting requests (admins):
 * `{"cancelled", "dropped_requests", "running"}`.
 */
export async function cancelGithubSync() {
  return jsonOf(await request("POST", "/api/github/sync/cancel"));
}

/** A page of the sync journal, newest first: `{"entries", "next"}`; `next` is the cursor for `after`. */
export async function getGithubSyncs({ limit = 50, after } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (after) query.set("after", after);
  return jsonOf(await request("GET", `/api/github/syncs?${query}`));
}

// --- workflows and runs -------------------------------------------------------------------------

const segment = (value) => encodeURIComponent(String(value));

// --- workflow secrets ---------------------------------------------------------------------------

/** `{"secrets": [{"name", "updated"}]}`: names only; the API never returns a value. */
export async function getSecrets() {
  return jsonOf(await request("GET", "/api/secrets"));
}

/** Set or replace a value (admins); resolves to `{"name", "replaced"}`. The value is kept nowhere. */
export async function putSecret(name, value) {
  return jsonOf(await request("PUT", `/api/secrets/${segment(name)}`, { json: { value } }));
}

export async function deleteSecret(name) {
  await request("DELETE", `/api/secrets/${segment(name)}`);
}

/** Every workflow file with its parameters and steps, or its load error (`error: {message, file, line}`). */
export async function getWorkflows() {
  return jsonOf(await request("GET", "/api/workflows"));
}

/** Start a run (202 `{"run", "status_url"}`); a 422 is `params_invalid` or `workflow_load_failed`. */
export async function startRun(workflow, params) {
  return jsonOf(await request("POST", `/api/workflows/${segment(workflow)}/runs`, { json: { params } }));
}

/** The run history, newest first: of one workflow, or of all of them. */
export async function getRuns({ workflow, limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (workflow) query.set("workflow", workflow);
  return jsonOf(await request("GET", `/api/runs?${query}`));
}

/** A run with its steps. */
export async function getRun(id) {
  return jsonOf(await request("GET", `/api/runs/${segment(id)}`));
}

/** Ask a run to stop (202 with the run; 409 `run_finished` when it already ended). */
export async function cancelRun(id) {
  return jsonOf(await request("POST", `/api/runs/${segment(id)}/cancel`));
}

/** The address of a run's log; with `Accept: text/event-stream` (EventSource) a live stream. */
export const runLogsUrl = (id, after = 0) => `/api/runs/${segment(id)}/logs?after=${encodeURIComponent(after)}`;

/** Log lines after `after`: `{"lines", "next", "status", "complete"}`. */
export async function getRunLogs(id, after = 0) {
  return jsonOf(await request("GET", runLogsUrl(id, after), { headers: { Accept: "application/json" } }));
}

// --- sites and deployments ----------------------------------------------------------------------

/** Every site: its state, what it serves (`live_*`), its continuous-deployment binding and last deployment. */
export async function getSites() {
  return jsonOf(await request("GET", "/api/sites"));
}

/** Deploy pushes to `branch` (of the connected repository) to `site`: resolves to the site. */
export async function putBinding(site, binding) {
  return jsonOf(await request("PUT", `/api/sites/${segment(site)}/binding`, { json: binding }));
}

/** Stop deploying pushes to `site`: resolves to the site. */
export async function deleteBinding(site) {
  return jsonOf(await request("DELETE", `/api/sites/${segment(site)}/binding`));
}

/**
 * Republish an earlier deployment's artifact (202 `{"deployment", "status_url"}`); without
 * `deploymentId`, the last good one before the live one.
 */
export async function rollbackSite(site, deploymentId) {
  const json = deploymentId ? { deployment_id: deploymentId } : {};
  return jsonOf(await request("POST", `/api/sites/${segment(site)}/rollback`, { json }));
}

/**
 * Queue a deployment (202 `{"deployment", "status_url"}`): `{site, source: "workspace" | "git",
 * folder?, repository?, ref?, package_manager?, build_command?, output_dir?, verify_path?,
 * verify_text?}`. A 422 names the field it refuses; 409 `not_configured` when there is nowhere
 * to publish.
 */
export async function startDeployment(body) {
  return jsonOf(await request("POST", "/api/deployments", { json: body }));
}

/** Deployments newest first: of one site, or recent ones of every site. */
export async function getDeployments({ site, limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (site) query.set("site", site);
  return jsonOf(await request("GET", `/api/deployments?${query}`));
}

/** A deployment with its steps, durations and estimate. */
export async function getDeployment(id) {
  return jsonOf(await request("GET", `/api/deployments/${segment(id)}`));
}

/** Stop a deployment that has not begun publishing (202 with the deployment; 409 after). */
export async function cancelDeployment(id) {
  return jsonOf(await request("POST", `/api/deployments/${segment(id)}/cancel`));
}

/** The same inputs again (202 `{"deployment", "status_url"}`). */
export async function retryDeployment(id) {
  return jsonOf(await request("POST", `/api/deployments/${segment(id)}/retry`));
}

/** The address of a deployment's log; with `Accept: text/event-stream` (EventSource) a live stream. */
export const deploymentLogsUrl = (id, after = 0) =>
  `/api/deployments/${segment(id)}/logs?after=${encodeURIComponent(after)}`;

/** Log lines after `after`: `{"lines", "next", "status", "complete"}`. */
export async function getDeploymentLogs(id, after = 0) {
  return jsonOf(await request("GET", deploymentLogsUrl(id, after), { headers: { Accept: "application/json" } }));
}
