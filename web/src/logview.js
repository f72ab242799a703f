// A live log, shared by the run page and the deployment page (their log APIs have one shape:
// `GET …/logs?after=N` → `{lines, next, status, complete}`, and with `Accept: text/event-stream`
// the events `line`, `status` and `end`).
//
// The log comes from the server-sent event stream; when no event arrives within a few seconds
// (a host that buffers responses, as Azure Functions does) it is read by polling `?after=N`
// instead. It is always polled when the API said it cannot stream (`X-Slipway-Streaming: buffered`,
// under the Functions host) and with an API token: EventSource cannot send the Authorization
// header, and the token never goes into a URL.
import * as api from "./api.js";
import { absoluteTime, h, parseTime } from "./dom.js";

const LOG_POLL_MS = 1000;
const RETRY_MS = 3000;
const SSE_SILENCE_MS = 3000;
const MAX_LOG_LINES = 20000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const clock = (value) => parseTime(value)?.toLocaleTimeString([], { hour12: false }) ?? "";

// --- following the log -------------------------------------------------------------------------

/**
 * Follows a log from line `after`: SSE first, polling when the stream stays silent.
 * `source.url(after)` is the log's address, `source.read(after)` one page of it.
 * `onLines(lines)` gets each new line once, in order; `onMode("live" | "polling" | "complete")`;
 * `onError(message | null)` when reading fails (polling keeps retrying) or works again.
 */
export class LogFollower {
  constructor(source, { onLines, onMode, onError }) {
    this.url = source.url;
    this.read = source.read;
    this.next = 0;
    this.handlers = { onLines, onMode, onError };
    this.stopped = false;
    this.source = null;
    this.silence = null;
    this.pending = [];
    this.flushTimer = null;
  }

  start() {
    if (typeof EventSource === "function" && !api.usesToken() && api.canStream()) this.stream();
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
    const source = new EventSource(this.url(this.next));
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
        page = await this.read(this.next);
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

// --- the panel ---------------------------------------------------------------------------------

/**
 * The log's part of a page: a heading with a step filter and the mode (live, polling,
 * complete), a note (empty, or why it cannot be read) and the lines.
 * `label` names the log for assistive technology ("Run log"); `empty` is what a finished log
 * without lines says ("The run wrote no log lines.").
 */
export function createLogPanel({ label, empty }) {
  let filter = "";
  let mode = "";
  let error = null;
  let follower = null;

  const select = h("select", { className: "log-filter", "aria-label": "Show the lines of" }, h("option", { value: "" }, "All steps"));
  const modeText = h("span", { className: "log-mode muted" });
  const log = h("div", { className: "log", role: "log", "aria-label": label, tabIndex: 0 });
  const note = h("p", { className: "log-note muted" }, "No log lines yet.");
  const head = h("div", { className: "log-head" }, h("h3", {}, "Log"), select, modeText);

  select.addEventListener("change", () => {
    filter = select.value;
    for (const line of log.children) line.hidden = Boolean(filter) && line.dataset.step !== filter;
    log.scrollTop = log.scrollHeight;
  });

  function renderState() {
    const words = { live: "live", polling: "polling", complete: "complete" };
    modeText.textContent = error ? "" : words[mode] || "";
    modeText.className = `log-mode ${mode}`;
    const nothing = !log.children.length;
    note.hidden = !error && !nothing;
    note.className = `log-note ${error ? "failed" : "muted"}`;
    note.textContent = error || (mode === "complete" ? empty : "No log lines yet.");
  }

  function append(lines) {
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
    renderState();
  }

  return {
    /** The elements to place in the page, in order. */
    elements: [head, note, log],

    /** The steps the filter offers, in order. */
    setSteps(names) {
      const have = [...select.options].slice(1).map((o) => o.value);
      if (names.join() === have.join()) return;
      select.replaceChildren(h("option", { value: "" }, "All steps"), ...names.map((n) => h("option", { value: n, selected: n === filter }, n)));
    },

    /** Follow the log at `source` ({url, read}) until it completes or `stop()`. */
    follow(source) {
      follower?.stop();
      follower = new LogFollower(source, {
        onLines: append,
        onMode: (value) => {
          mode = value;
          renderState();
        },
        onError: (message) => {
          error = message;
          renderState();
        },
      });
      renderState();
      follower.start();
    },

    stop() {
      follower?.stop();
      follower = null;
    },
  };
}
