// The Health view: who the API thinks I am, and every dependency check with its latency.
import * as api from "./api.js";

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function definitions(target, pairs) {
  target.replaceChildren(
    ...pairs.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }),
  );
}

export function createHealthView() {
  const summary = document.getElementById("health-summary");
  const table = document.getElementById("health-checks");
  const runtime = document.getElementById("health-runtime");
  const principal = document.getElementById("principal");
  let running = null;

  async function refresh() {
    if (running) return running;
    summary.textContent = "Checking…";
    summary.className = "";
    running = (async () => {
      try {
        const me = await api.getMe();
        definitions(principal, [
          ["Principal", me.name],
          ["Provider", me.provider],
          ["Roles", me.roles.length ? me.roles.join(", ") : "none"],
        ]);
        const health = await api.getHealth();
        table.querySelector("tbody").replaceChildren(
          ...health.checks.map((check) => {
            const tr = document.createElement("tr");
            tr.append(
              cell(check.name),
              cell(check.ok ? "ok" : "failed", check.ok ? "ok" : "failed"),
              cell(check.latency_ms == null ? "" : `${check.latency_ms} ms`),
              cell(check.detail),
            );
            return tr;
          }),
        );
        table.hidden = false;
        const failed = health.checks.filter((check) => !check.ok);
        summary.textContent =
          failed.length === 0
            ? "Every check passed."
            : `${failed.length} check(s) failed: ${failed.map((c) => c.name).join(", ")}.`;
        summary.className = failed.length === 0 ? "good" : "failed";
        definitions(runtime, Object.entries(health.runtime || {}).map(([k, v]) => [k, String(v)]));
      } catch (error) {
        summary.textContent = `Health could not be read: ${error.message}`;
        summary.className = "failed";
      } finally {
        running = null;
      }
    })();
    return running;
  }

  document.getElementById("health-refresh").addEventListener("click", refresh);
  return { refresh };
}
