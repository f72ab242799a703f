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

async function request(method, url, { headers = {}, body, json, alsoOk = [] } = {}) {
  const init = { method, headers: { ...headers }, cache: "no-store", credentials: "same-origin" };
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
  if (!response.ok && !alsoOk.includes(response.status)) throw await errorOf(response);
  return response;
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

/** `{"connected": false}` or the repository, branch, webhook, last sync and snapshots. */
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

/** Queue a sync of the connected branch now (202 `{"queued": true}`). */
export async function syncGithub() {
  return jsonOf(await request("POST", "/api/github/sync"));
}

export async function getGithubSyncs(limit = 50) {
  return jsonOf(await request("GET", `/api/github/syncs?limit=${encodeURIComponent(limit)}`));
}

// --- workflows and runs -------------------------------------------------------------------------

const segment = (value) => encodeURIComponent(String(value));

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
