// Workspace paths: relative, "/"-separated, no leading or trailing slash; "" is the root.

export const basename = (path) => path.slice(path.lastIndexOf("/") + 1);

export function dirname(path) {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

export const join = (folder, name) => (folder ? `${folder}/${name}` : name);

/** True when `path` is `folder` itself or lies somewhere below it. */
export const isWithin = (path, folder) => path === folder || path.startsWith(`${folder}/`);

/** `path` with the `from` prefix (itself or a folder above it) replaced by `to`. */
export const rebase = (path, from, to) => (path === from ? to : to + path.slice(from.length));

/** Each segment percent-encoded, as the API expects in URLs. */
export const encodePath = (path) => path.split("/").map(encodeURIComponent).join("/");

/**
 * What the user typed, tidied (backslashes, "./", doubled and outer slashes), or an error.
 * The server has the final word on what it accepts (400 path_rejected says why).
 */
export function cleanPathInput(raw) {
  const path = raw
    .trim()
    .replaceAll("\\", "/")
    .split("/")
    .filter((segment, index) => segment !== "" && !(segment === "." && index === 0))
    .join("/");
  if (!path) return { error: "Enter a name." };
  if (path.split("/").some((segment) => segment === "." || segment === "..")) {
    return { error: "“.” and “..” are not allowed in a path." };
  }
  return { path };
}

export function formatBytes(size) {
  if (size == null) return "";
  if (size < 1024) return `${size} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = size / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
