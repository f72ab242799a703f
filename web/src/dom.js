// Small helpers shared by the views: building elements, and showing times and durations.

/** An element with properties (`className`, `hidden`, `dataset`…), attributes ("aria-*") and children. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.includes("-") || key === "role" || key === "for") element.setAttribute(key, value === true ? "" : value);
    else element[key] = value;
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export const plural = (n, word, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;

/** Parse the API's timestamps (.NET-style 7-digit fractions included) to a Date, or null. */
export function parseTime(value) {
  if (!value) return null;
  const normalized = String(value).replace(/(\.\d{3})\d+/, "$1");
  const date = new Date(normalized);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function relativeTime(value, now = Date.now()) {
  const date = parseTime(value);
  if (!date) return value ? String(value) : "";
  const seconds = Math.round((now - date.getTime()) / 1000);
  const future = seconds < 0;
  const s = Math.abs(seconds);
  let text;
  if (s < 45) return future ? "in a moment" : "just now";
  if (s < 90) text = "1 min";
  else if (s < 3600) text = `${Math.round(s / 60)} min`;
  else if (s < 86400) text = plural(Math.round(s / 3600), "hour");
  else if (s < 86400 * 30) text = plural(Math.round(s / 86400), "day");
  else return date.toLocaleDateString();
  return future ? `in ${text}` : `${text} ago`;
}

export const absoluteTime = (value) => parseTime(value)?.toLocaleString() ?? (value ? String(value) : "");

/** A <time> showing how long ago, with the date and time in its tooltip. */
export function time(value) {
  return h("time", { dateTime: value || "", title: absoluteTime(value) }, relativeTime(value));
}

export function formatDuration(ms) {
  if (ms == null) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
