// The status page: who am I, and is every dependency of the platform healthy?
const who = document.getElementById("who");
const summary = document.getElementById("summary");
const table = document.getElementById("checks");
const runtime = document.getElementById("runtime");

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  let body = null;
  try { body = await response.json(); } catch { /* a proxy error page is not JSON */ }
  if (!response.ok && !(body && body.checks)) {
    const message = body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
    throw new Error(`${path}: ${message}`);
  }
  return body;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function refresh() {
  summary.textContent = "Checking…";
  summary.className = "";
  try {
    const me = await getJson("/api/me");
    who.textContent = `${me.name} (${me.roles.join(", ") || "no role"})`;
    const health = await getJson("/api/health/detailed");
    const rows = table.querySelector("tbody");
    rows.replaceChildren(...health.checks.map((check) => {
      const tr = document.createElement("tr");
      tr.append(
        cell(check.name),
        cell(check.ok ? "ok" : "failed", check.ok ? "ok" : "failed"),
        cell(`${check.latency_ms} ms`),
        cell(check.detail),
      );
      return tr;
    }));
    table.hidden = false;
    const failed = health.checks.filter((check) => !check.ok);
    summary.textContent = failed.length === 0
      ? "Every check passed."
      : `${failed.length} check(s) failed: ${failed.map((c) => c.name).join(", ")}.`;
    summary.className = failed.length === 0 ? "" : "failed";
    runtime.replaceChildren(...Object.entries(health.runtime).flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }));
  } catch (error) {
    summary.textContent = error.message;
    summary.className = "failed";
  }
}

document.getElementById("refresh").addEventListener("click", refresh);
refresh();
