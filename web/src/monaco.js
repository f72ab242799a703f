// Monaco, trimmed to what a script editor needs: the editor and diff editor with their usual
// contributions, Monarch highlighting for every basic language (each loaded on first use), and
// the JSON language service. The TypeScript, CSS and HTML services (megabytes of workers) are
// left out; those languages still get highlighting from their Monarch definitions.
import * as monaco from "monaco-editor/editor/editor.api";
import "monaco-editor/features/register.all";
import "monaco-editor/languages/definitions/register.all";
import "monaco-editor/languages/features/json/register";
import EditorWorker from "monaco-editor/editor/editor.worker?worker";
import JsonWorker from "monaco-editor/language/json/json.worker?worker";

self.MonacoEnvironment = {
  getWorker(_moduleId, label) {
    return label === "json" ? new JsonWorker() : new EditorWorker();
  },
};

const byExtension = {
  py: "python", pyw: "python", pyi: "python",
  js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascript",
  ts: "typescript", mts: "typescript", cts: "typescript", tsx: "typescript",
  json: "json", jsonc: "json", json5: "json", ipynb: "json", map: "json",
  yaml: "yaml", yml: "yaml",
  md: "markdown", markdown: "markdown", mdx: "mdx",
  sh: "shell", bash: "shell", zsh: "shell", ksh: "shell",
  // Monaco has no TOML grammar; INI's sections, keys and strings are a close match.
  toml: "ini", ini: "ini", cfg: "ini", conf: "ini", env: "ini", properties: "ini", editorconfig: "ini",
  html: "html", htm: "html", xhtml: "html",
  css: "css", scss: "scss", sass: "scss", less: "less",
  xml: "xml", xsd: "xml", svg: "xml", csproj: "xml", props: "xml",
  txt: "plaintext", log: "plaintext", text: "plaintext",
  sql: "sql", ps1: "powershell", psm1: "powershell", bat: "bat", cmd: "bat",
  bicep: "bicep", tf: "hcl", hcl: "hcl", go: "go", rs: "rust", rb: "ruby", java: "java",
  kt: "kotlin", cs: "csharp", cpp: "cpp", cc: "cpp", c: "cpp", h: "cpp", hpp: "cpp",
  php: "php", lua: "lua", r: "r", swift: "swift", scala: "scala", graphql: "graphql", gql: "graphql",
  proto: "protobuf", dockerfile: "dockerfile",
};

const byName = {
  dockerfile: "dockerfile", containerfile: "dockerfile", makefile: "plaintext",
  ".gitignore": "ini", ".dockerignore": "ini", ".env": "ini", ".npmrc": "ini", ".editorconfig": "ini",
};

const languageNames = { plaintext: "Plain text", ini: "INI / TOML", shell: "Shell", javascript: "JavaScript", typescript: "TypeScript", json: "JSON", yaml: "YAML", markdown: "Markdown", python: "Python", html: "HTML", css: "CSS" };

export function languageOf(path) {
  const name = path.slice(path.lastIndexOf("/") + 1).toLowerCase();
  if (byName[name]) return byName[name];
  if (name.startsWith("dockerfile.")) return "dockerfile";
  const dot = name.lastIndexOf(".");
  return (dot > 0 || name.startsWith(".") ? byExtension[name.slice(dot + 1)] : null) || "plaintext";
}

export function languageLabel(id) {
  return languageNames[id] || monaco.languages.getLanguages().find((l) => l.id === id)?.aliases?.[0] || id;
}

export const editorOptions = {
  automaticLayout: true,
  fontFamily: "'JetBrains Mono', 'Cascadia Code', 'Fira Code', Menlo, Consolas, 'DejaVu Sans Mono', monospace",
  fontSize: 13,
  lineHeight: 20,
  minimap: { enabled: true, renderCharacters: false, maxColumn: 80 },
  scrollBeyondLastLine: false,
  renderWhitespace: "selection",
  smoothScrolling: true,
  tabSize: 4,
  insertSpaces: true,
  detectIndentation: true,
  stickyScroll: { enabled: false },
  padding: { top: 8 },
};

export { monaco };
