// Slipway's script editor: the workspace tree on the left, Monaco on the right.
//
// One document is open at a time. Its text lives in a Monaco model; "dirty" means the model's
// version differs from the version last loaded or saved, so undoing back to the saved text
// makes it clean again. Every save sends the ETag the text was based on; when someone else
// saved first (412) the user decides (reload, overwrite, compare) and their text stays in the
// model whatever they pick, until they pick to replace it.
import "./style.css";
import * as api from "./api.js";
import { dialogOpen, paragraphs, sentence, showDialog } from "./dialogs.js";
import { createHealthView } from "./health.js";
import { hydrateIcons, icon } from "./icons.js";
import { basename, cleanPathInput, dirname, formatBytes, isWithin, rebase } from "./paths.js";
import { showError, toast } from "./toasts.js";
import { TreeModel, TreeView } from "./tree.js";

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();

const state = {
  me: null,
  meFailed: false,
  mode: "manual",
  github: null,
  maxBytes: 10 * 1024 * 1024,
  /** @type {null | {kind: "text", path: string, etag: string, model: any, savedVersion: number, dirty: boolean, listener: any}
   *         | {kind: "binary", path: string, entry: object}} */
  doc: null,
  openToken: 0,
  saving: null,
  savedAt: null,
};

// --- permissions -------------------------------------------------------------------------------

const hasAdminRole = () => Boolean(state.me && state.me.roles.includes("admin"));
const hasEditorRole = () => Boolean(state.me && state.me.roles.some((r) => r === "editor" || r === "admin"));
const canEdit = () => state.mode !== "github" && hasEditorRole();

function applyPermissions() {
  const editable = canEdit();
  document.body.classList.toggle("readonly", !editable);
  for (const element of document.querySelectorAll(".mutating button")) {
    element.disabled = !editable || (element.id === "btn-save" && !state.doc?.dirty);
  }
  const banner = $("readonly-banner");
  banner.replaceChildren();
  if (state.mode === "github") {
    const repo = state.github ? `${state.github.repository} (${state.github.branch})` : "a repository";
    banner.innerHTML = icon("lock");
    banner.append(` Managed by GitHub: ${repo} — editing is disabled`);
    banner.className = "banner github";
    banner.hidden = false;
  } else if (state.me && !hasEditorRole()) {
    banner.innerHTML = icon("lock");
    banner.append(` Read-only: ${state.me.name} does not have the editor role — editing is disabled`);
    banner.className = "banner role";
    banner.hidden = false;
  } else if (state.meFailed) {
    banner.innerHTML = icon("lock");
    banner.append(" Your roles could not be read (see the error) — editing is disabled until the page is reloaded");
    banner.className = "banner role";
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  if (editor) {
    editor.updateOptions({
      readOnly: !editable,
      readOnlyMessage: {
        value:
          state.mode === "github"
            ? "This workspace is managed by GitHub: editing is disabled."
            : "You do not have the editor role: editing is disabled.",
      },
    });
  }
  $("status-mode").textContent =
    state.mode === "github" && state.github
      ? `GitHub: ${state.github.repository} (${state.github.branch}) · read-only`
      : state.mode === "github"
        ? "GitHub · read-only"
        : "Manual workspace";
  updateDocChrome();
  updateSelectionButtons();
}

// --- Monaco (loaded on demand, prefetched after the first paint) ----------------------------

let monaco = null;
let editor = null;
let languageOf = () => "plaintext";
let languageLabel = (id) => id;
let editorOptions = {};
let editorLoading = null;

function ensureEditor() {
  editorLoading ||= import("./monaco.js")
    .then((module) => {
      monaco = module.monaco;
      languageOf = module.languageOf;
      languageLabel = module.languageLabel;
      editorOptions = module.editorOptions;
      editor = monaco.editor.create($("editor"), { ...editorOptions, model: null, theme: "vs" });
      editor.onDidChangeCursorPosition((event) => {
        $("status-cursor").textContent = `Ln ${event.position.lineNumber}, Col ${event.position.column}`;
      });
      applyPermissions();
      return editor;
    })
    .catch((error) => {
      editorLoading = null;
      throw new Error(`The editor could not be loaded (${error.message}); reload the page.`);
    });
  return editorLoading;
}

// --- the open document ------------------------------------------------------------------------

function showPane(name) {
  $("placeholder").hidden = name !== "placeholder";
  $("binary").hidden = name !== "binary";
  $("loading").hidden = name !== "loading";
  $("editor").hidden = name !== "editor" && name !== "loading";
}

function disposeDoc(doc) {
  if (doc && doc.kind === "text") {
    doc.listener.dispose();
    doc.model.dispose();
  }
}

function closeDoc() {
  const doc = state.doc;
  state.doc = null;
  if (editor) editor.setModel(null);
  disposeDoc(doc);
  showPane("placeholder");
  updateDocChrome();
  treeView.render();
}

function setTextDoc(path, text, etag) {
  const model = monaco.editor.createModel(text, languageOf(path));
  const doc = { kind: "text", path, etag, model, savedVersion: model.getAlternativeVersionId(), dirty: false };
  doc.listener = model.onDidChangeContent(() => updateDirty(doc));
  const previous = state.doc;
  state.doc = doc;
  editor.setModel(model);
  disposeDoc(previous);
  state.savedAt = null;
  showPane("editor");
  applyPermissions();
  treeView.render();
  editor.focus();
}

function setBinaryDoc(path, entry, note) {
  const previous = state.doc;
  state.doc = { kind: "binary", path, entry };
  if (editor) editor.setModel(null);
  disposeDoc(previous);
  $("binary-name").textContent = basename(path);
  const size = entry && entry.size != null ? formatBytes(entry.size) : "unknown size";
  $("binary-info").textContent = `${note || "Binary file"} · ${size} · not opened in the editor`;
  const link = $("binary-download");
  link.href = api.fileUrl(path, { download: true });
  link.setAttribute("download", basename(path));
  showPane("binary");
  updateDocChrome();
  treeView.render();
}

function updateDirty(doc) {
  const dirty = doc.model.getAlternativeVersionId() !== doc.savedVersion;
  if (dirty === doc.dirty) return;
  doc.dirty = dirty;
  if (doc === state.doc) {
    updateDocChrome();
    treeView.render();
  }
}

function markSaved(doc, entry, version) {
  doc.etag = entry.etag || doc.etag;
  doc.savedVersion = version;
  const node = treeView.model.get(doc.path);
  if (node) node.entry = { ...node.entry, ...entry };
  state.savedAt = new Date();
  updateDirty(doc);
  updateDocChrome();
}

function updateDocChrome() {
  const doc = state.doc;
  const dirty = Boolean(doc && doc.dirty);
  $("doc-tab").hidden = !doc;
  $("doc-tab").classList.toggle("dirty", dirty);
  $("doc-name").textContent = doc ? basename(doc.path) : "";
  $("doc-dir").textContent = doc && dirname(doc.path) ? dirname(doc.path) : "";
  $("doc-dirty").hidden = !dirty;
  $("doc-readonly").hidden = !doc || doc.kind !== "text" || canEdit();
  $("btn-save").disabled = !canEdit() || !doc || doc.kind !== "text" || !dirty;
  document.title = doc ? `${dirty ? "● " : ""}${basename(doc.path)} — Slipway` : "Slipway";
  const text = doc && doc.kind === "text";
  $("status-language").textContent = text ? languageLabel(doc.model.getLanguageId()) : "";
  $("status-eol").textContent = text ? (doc.model.getEOL() === "\r\n" ? "CRLF" : "LF") : "";
  if (!text) $("status-cursor").textContent = "";
  $("status-save").textContent = !text
    ? ""
    : dirty
      ? "Unsaved changes"
      : state.savedAt
        ? `Saved ${state.savedAt.toLocaleTimeString()}`
        : "No changes";
  $("status-save").classList.toggle("dirty", dirty);
}

/** Decode as UTF-8, refusing invalid bytes: a lossy decode would corrupt the file on save. */
function decodeText(bytes) {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}

async function openFile(path) {
  const node = treeView.model.get(path);
  if (!node || node.type === "folder") return;
  if (node.type === "symlink") {
    toast(`${path} is a symbolic link; links are not opened in the editor.`);
    return;
  }
  if (state.doc && state.doc.path === path) {
    if (state.doc.kind === "text") editor.focus();
    return;
  }
  if (!(await confirmLeave())) {
    if (state.doc) treeView.select(state.doc.path);
    return;
  }
  const token = ++state.openToken;
  if (node.entry && node.entry.text === false) {
    setBinaryDoc(path, node.entry);
    return;
  }
  showPane("loading");
  try {
    const [file] = await Promise.all([api.readFile(path), ensureEditor()]);
    if (token !== state.openToken) return;
    const text = file.text ? decodeText(file.bytes) : null;
    if (text === null) {
      setBinaryDoc(path, { ...node.entry, size: file.bytes.byteLength }, file.text ? "Not valid UTF-8" : "Binary file");
      return;
    }
    setTextDoc(path, text, file.etag);
  } catch (error) {
    if (token !== state.openToken) return;
    showPane(state.doc ? (state.doc.kind === "text" ? "editor" : "binary") : "placeholder");
    showError(error, `Could not open ${path}`);
    if (error.status === 404) await loadTree();
  }
}

/** Before the open document is replaced: true to go ahead (saved, or discarded by choice). */
async function confirmLeave() {
  const doc = state.doc;
  if (!doc || doc.kind !== "text" || !doc.dirty) return true;
  const buttons = [{ label: "Cancel", value: "cancel" }, { label: "Discard changes", value: "discard", kind: "danger" }];
  if (canEdit()) buttons.push({ label: "Save", value: "save", kind: "primary", focus: true });
  else buttons[0].focus = true;
  const choice = await showDialog({
    title: "Unsaved changes",
    message: paragraphs(
      sentence({ strong: doc.path }, " has changes that are not saved."),
      canEdit() ? null : sentence("Editing is disabled, so they cannot be saved here; copy them out first if you need them."),
    ),
    buttons,
  });
  if (!choice) return false;
  if (choice.value === "discard") return true;
  return save();
}

// --- saving and conflicts --------------------------------------------------------------------

async function save() {
  const doc = state.doc;
  if (!doc || doc.kind !== "text") return false;
  if (!canEdit()) {
    toast(state.mode === "github" ? "This workspace is managed by GitHub: editing is disabled." : "You do not have the editor role.", { kind: "error" });
    return false;
  }
  if (state.saving) return state.saving;
  state.saving = (async () => {
    const version = doc.model.getAlternativeVersionId();
    const bytes = encoder.encode(doc.model.getValue());
    if (bytes.byteLength > state.maxBytes) {
      showError(new Error(`it is ${formatBytes(bytes.byteLength)}; the limit is ${formatBytes(state.maxBytes)}`), `${doc.path} is too large to save`);
      return false;
    }
    $("status-save").textContent = "Saving…";
    try {
      const entry = await api.writeFile(doc.path, bytes, { etag: doc.etag });
      markSaved(doc, entry, version);
      return true;
    } catch (error) {
      if (error.status === 412) return resolveConflict(doc);
      updateDocChrome();
      showError(error, `Could not save ${doc.path}`);
      if (error.status === 409 && error.code === "read_only") await loadTree();
      return false;
    }
  })();
  try {
    return await state.saving;
  } finally {
    state.saving = null;
  }
}

/** Someone saved the file after it was opened: the user picks; their text is kept until they do. */
async function resolveConflict(doc) {
  for (;;) {
    let theirs;
    try {
      theirs = await api.readFile(doc.path);
    } catch (error) {
      if (error.status !== 404) {
        updateDocChrome();
        showError(error, `${doc.path} changed on the server and its new version could not be read; your text is still in the editor`);
        return false;
      }
      theirs = null; // deleted meanwhile
    }
    const theirsText = theirs && theirs.text ? decodeText(theirs.bytes) : null;
    $("status-save").textContent = "Save conflict: choose what to keep";
    let choice = await conflictDialog(doc, theirs, theirsText);
    if (choice === "compare") choice = await compareDialog(doc, theirs, theirsText);
    if (choice === "reload") {
      replaceText(doc, theirsText);
      markSaved(doc, { etag: theirs.etag }, doc.model.getAlternativeVersionId());
      toast(`Reloaded ${doc.path} from the server. Undo (Ctrl+Z) brings your text back.`);
      return true;
    }
    if (choice === "overwrite") {
      const version = doc.model.getAlternativeVersionId();
      try {
        const bytes = encoder.encode(doc.model.getValue());
        const entry = theirs
          ? await api.writeFile(doc.path, bytes, { etag: theirs.etag })
          : await api.writeFile(doc.path, bytes, { create: true });
        markSaved(doc, entry, version);
        await loadTree();
        toast(`Saved your version of ${doc.path}.`);
        return true;
      } catch (error) {
        if (error.status === 412 || (error.status === 409 && error.code === "already_exists")) {
          toast(`${doc.path} changed on the server again; compare once more.`);
          continue;
        }
        updateDocChrome();
        showError(error, `Could not save ${doc.path}; your text is still in the editor`);
        return false;
      }
    }
    updateDocChrome();
    return false;
  }
}

async function conflictDialog(doc, theirs, theirsText) {
  const deleted = !theirs;
  const buttons = [{ label: "Cancel", value: "cancel" }];
  if (!deleted && theirsText !== null) {
    buttons.push({ label: "Compare", value: "compare" });
    buttons.push({ label: "Reload (discard mine)", value: "reload", kind: "danger" });
  }
  buttons.push({ label: deleted ? "Save mine again" : "Overwrite (keep mine)", value: "overwrite", kind: "primary", focus: true });
  const choice = await showDialog({
    title: deleted ? "The file was deleted" : "Someone else saved this file",
    className: "conflict",
    message: paragraphs(
      deleted
        ? sentence({ strong: doc.path }, " was deleted on the server after you opened it.")
        : sentence({ strong: doc.path }, " was changed on the server after you opened it."),
      theirs && theirsText === null ? sentence("Their version is not text, so it cannot be compared or loaded here.") : null,
      sentence("Your changes are still in the editor. Cancel keeps them there without saving."),
    ),
    buttons,
  });
  return choice ? choice.value : "cancel";
}

async function compareDialog(doc, theirs, theirsText) {
  const wrapper = document.createElement("div");
  wrapper.className = "compare-body";
  const labels = document.createElement("div");
  labels.className = "compare-labels";
  labels.innerHTML = "<span>Theirs — on the server now</span><span>Mine — in the editor (you can edit here)</span>";
  const host = document.createElement("div");
  host.className = "diff-host";
  wrapper.append(labels, host);
  let diff = null;
  let original = null;
  const choice = await showDialog({
    title: `Compare ${doc.path}`,
    wide: true,
    className: "compare",
    message: wrapper,
    buttons: [
      { label: "Back to editing", value: "cancel" },
      { label: "Reload theirs (discard mine)", value: "reload", kind: "danger" },
      { label: "Overwrite with mine", value: "overwrite", kind: "primary", focus: true },
    ],
    onOpen: () => {
      original = monaco.editor.createModel(theirsText, doc.model.getLanguageId());
      diff = monaco.editor.createDiffEditor(host, {
        ...editorOptions,
        minimap: { enabled: false },
        originalEditable: false,
        readOnly: false,
        renderSideBySide: true,
        ignoreTrimWhitespace: false,
        renderOverviewRuler: true,
      });
      diff.setModel({ original, modified: doc.model });
    },
    onClose: () => {
      diff?.dispose();
      original?.dispose();
    },
  });
  return choice ? choice.value : "cancel";
}

/** Replace the whole text as one undoable edit, so Ctrl+Z restores what was there. */
function replaceText(doc, text) {
  doc.model.pushStackElement();
  doc.model.pushEditOperations([], [{ range: doc.model.getFullModelRange(), text }], () => null);
  doc.model.pushStackElement();
}

// --- the tree ---------------------------------------------------------------------------------

const treeView = new TreeView($("tree"), {
  onOpen: (node) => openFile(node.path),
  onSelect: () => updateSelectionButtons(),
  onContextMenu: (node, event) => showContextMenu(node, event),
  onKey: (key) => {
    if (key === "F2") renameSelected();
    else if (key === "Delete") deleteSelected();
    else return false;
    return true;
  },
  decorate: (node) => ({
    open: Boolean(state.doc && state.doc.path === node.path),
    dirty: Boolean(state.doc && state.doc.path === node.path && state.doc.dirty),
  }),
});

let treeLoading = null;

async function loadTree() {
  treeLoading ||= (async () => {
    try {
      const tree = await api.getTree();
      state.mode = tree.mode === "github" ? "github" : "manual";
      state.github = tree.github || null;
      if (tree.max_file_bytes) state.maxBytes = tree.max_file_bytes;
      const model = new TreeModel(tree.entries || []);
      treeView.setModel(model);
      const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
      $("tree-count").textContent = plural(model.files, "file");
      $("status-files").textContent = `${plural(model.files, "file")} · ${plural(model.folders, "folder")}`;
      applyPermissions();
      return true;
    } catch (error) {
      showError(error, "Could not load the workspace tree");
      if (!treeView.model.nodes.size || treeView.rows.length === 0) {
        treeView.setModel(treeView.model, `The tree could not be loaded: ${error.message}`);
      }
      return false;
    } finally {
      treeLoading = null;
    }
  })();
  return treeLoading;
}

function updateSelectionButtons() {
  const node = treeView.selectedNode();
  const editable = canEdit();
  $("btn-rename").disabled = !editable || !node;
  $("btn-delete").disabled = !editable || !node;
}

/** Where "New file" and "New folder" create: the selected folder, or the selected file's folder. */
function targetFolder() {
  const node = treeView.selectedNode();
  if (!node) return "";
  return node.type === "folder" ? node.path : dirname(node.path);
}

async function createFile() {
  if (!canEdit()) return;
  const folder = targetFolder();
  const result = await showDialog({
    title: "New file",
    message: folder ? sentence("In the folder ", { strong: folder }, ". Add “folder/” in front of the name to create it deeper.") : "At the top of the workspace.",
    input: { label: "Path", value: folder ? `${folder}/` : "", placeholder: "hello.py" },
    buttons: [
      { label: "Cancel", value: "cancel" },
      {
        label: "Create file",
        value: "create",
        kind: "primary",
        run: async (input) => {
          const { path, error } = cleanPathInput(input);
          if (error) throw new Error(error);
          if (input.trim().endsWith("/")) throw new Error("Enter a file name after the folder.");
          await api.writeFile(path, new Uint8Array(0), { create: true });
          return path;
        },
      },
    ],
  });
  if (!result) return;
  const path = result.result;
  await loadTree();
  treeView.reveal(path);
  await openFile(path);
}

async function createFolder() {
  if (!canEdit()) return;
  const folder = targetFolder();
  const result = await showDialog({
    title: "New folder",
    message: folder ? sentence("In the folder ", { strong: folder }, ".") : "At the top of the workspace.",
    input: { label: "Path", value: folder ? `${folder}/` : "", placeholder: "workflows" },
    buttons: [
      { label: "Cancel", value: "cancel" },
      {
        label: "Create folder",
        value: "create",
        kind: "primary",
        run: async (input) => {
          const { path, error } = cleanPathInput(input);
          if (error) throw new Error(error);
          if (path === folder) throw new Error("Enter the new folder's name after the parent folder.");
          await api.createFolder(path);
          return path;
        },
      },
    ],
  });
  if (!result) return;
  const path = result.result;
  treeView.setExpanded(path, true);
  await loadTree();
  treeView.reveal(path);
  $("tree").focus();
}

async function renameSelected() {
  const node = treeView.selectedNode();
  if (!node || !canEdit()) return;
  const from = node.path;
  const name = basename(from);
  const dot = name.lastIndexOf(".");
  const start = from.length - name.length;
  const end = node.type !== "folder" && dot > 0 ? start + dot : from.length;
  const what = node.type === "folder" ? "folder" : "file";
  const result = await showDialog({
    title: `Rename or move ${what}`,
    message: sentence("New path for ", { strong: from }, ". Change the folder part to move it; an existing item is never replaced."),
    input: { label: "Path", value: from, select: [start, end] },
    buttons: [
      { label: "Cancel", value: "cancel" },
      {
        label: "Rename",
        value: "move",
        kind: "primary",
        run: async (input) => {
          const { path, error } = cleanPathInput(input);
          if (error) throw new Error(error);
          if (path === from) return null;
          if (node.type === "folder" && isWithin(path, from)) throw new Error("A folder cannot be moved into itself.");
          await api.move(from, path);
          return path;
        },
      },
    ],
  });
  if (!result || !result.result) return;
  const to = result.result;
  treeView.renameExpanded(from, to);
  const doc = state.doc;
  if (doc && isWithin(doc.path, from)) {
    doc.path = rebase(doc.path, from, to);
    if (doc.kind === "text") monaco.editor.setModelLanguage(doc.model, languageOf(doc.path));
  }
  await loadTree();
  treeView.reveal(to);
  updateDocChrome();
  toast(`Moved ${from} to ${to}.`);
}

async function deleteSelected() {
  const node = treeView.selectedNode();
  if (!node || !canEdit()) return;
  const path = node.path;
  const folder = node.type === "folder";
  const doc = state.doc;
  const closesDoc = Boolean(doc && isWithin(doc.path, path));
  const losesChanges = closesDoc && doc.kind === "text" && doc.dirty;
  let etag = folder ? undefined : closesDoc && doc.kind === "text" ? doc.etag : node.entry?.etag;
  const parts = [];
  if (folder) {
    const { files, folders } = treeView.model.countWithin(path);
    parts.push(sentence("Delete the folder ", { strong: path }, " and everything in it?"));
    parts.push(
      sentence(
        files + folders === 0
          ? "It is empty."
          : `It is deleted recursively, with the ${files} file${files === 1 ? "" : "s"} and ${folders} folder${folders === 1 ? "" : "s"} inside.`,
      ),
    );
  } else {
    parts.push(sentence("Delete the file ", { strong: path }, "?"));
  }
  if (losesChanges) parts.push(sentence("The unsaved changes in ", { strong: doc.path }, " are lost too."));
  parts.push(sentence("This cannot be undone."));
  const result = await showDialog({
    title: folder ? "Delete folder" : "Delete file",
    message: paragraphs(...parts),
    buttons: [
      { label: "Cancel", value: "cancel", focus: true },
      {
        label: folder ? "Delete folder" : "Delete file",
        value: "delete",
        kind: "danger",
        run: async () => {
          try {
            await api.deleteEntry(path, { recursive: folder, etag });
          } catch (error) {
            if (error.status === 412) {
              etag = undefined; // the next press deletes whatever is there now
              throw new Error(`${error.message} It changed on the server since it was listed; press Delete again to delete the new version.`);
            }
            throw error;
          }
        },
      },
    ],
  });
  if (!result) return;
  if (closesDoc) closeDoc();
  if (folder) treeView.forgetExpanded(path);
  treeView.selected = dirname(path) || null;
  await loadTree();
  if (treeView.selected) treeView.select(treeView.selected);
  toast(`Deleted ${path}.`);
}

// --- context menu -----------------------------------------------------------------------------

let menu = null;

function closeMenu() {
  menu?.remove();
  menu = null;
}

function showContextMenu(node, event) {
  closeMenu();
  const items = [];
  if (node && node.type === "file") items.push(["Open", () => openFile(node.path)]);
  if (canEdit()) {
    items.push(["New file…", createFile], ["New folder…", createFolder]);
    if (node) items.push(["Rename / move…", renameSelected], ["Delete…", deleteSelected]);
  }
  if (node && node.type === "file") {
    items.push(["Download", () => downloadLink(api.fileUrl(node.path, { download: true }), node.name)]);
  }
  if (!items.length) return;
  menu = document.createElement("div");
  menu.className = "context-menu";
  menu.setAttribute("role", "menu");
  for (const [label, action] of items) {
    const item = document.createElement("button");
    item.type = "button";
    item.setAttribute("role", "menuitem");
    item.textContent = label;
    item.addEventListener("click", () => {
      closeMenu();
      action();
    });
    menu.append(item);
  }
  document.body.append(menu);
  const { innerWidth, innerHeight } = window;
  const rect = menu.getBoundingClientRect();
  menu.style.left = `${Math.min(event.clientX, innerWidth - rect.width - 4)}px`;
  menu.style.top = `${Math.min(event.clientY, innerHeight - rect.height - 4)}px`;
  menu.querySelector("button").focus();
  menu.addEventListener("keydown", (e) => {
    const buttons = [...menu.querySelectorAll("button")];
    const at = buttons.indexOf(document.activeElement);
    if (e.key === "Escape") {
      closeMenu();
      $("tree").focus();
    } else if (e.key === "ArrowDown") buttons[(at + 1) % buttons.length].focus();
    else if (e.key === "ArrowUp") buttons[(at - 1 + buttons.length) % buttons.length].focus();
    else return;
    e.preventDefault();
  });
}

document.addEventListener("pointerdown", (event) => {
  if (menu && !menu.contains(event.target)) closeMenu();
});

// --- views, splitter, shortcuts ------------------------------------------------------------

const health = createHealthView();

// The GitHub view is loaded when its tab is first opened, keeping the first paint small.
let github = null;
let githubLoading = null;

function loadGithubView() {
  githubLoading ||= import("./github.js")
    .then((module) => {
      github = module.createGithubView({
        isAdmin: hasAdminRole,
        // Connecting, syncing and disconnecting change the files and the mode: show them.
        onWorkspaceChanged: () => loadTree(),
      });
      return github;
    })
    .catch((error) => {
      githubLoading = null;
      throw new Error(`The GitHub view could not be loaded (${error.message}); reload the page.`);
    });
  return githubLoading;
}

// The Secrets view is loaded when its tab is first opened, too.
let secrets = null;
let secretsLoading = null;

function loadSecretsView() {
  secretsLoading ||= import("./secrets.js")
    .then((module) => {
      secrets = module.createSecretsView({ isAdmin: hasAdminRole, isEditor: hasEditorRole });
      return secrets;
    })
    .catch((error) => {
      secretsLoading = null;
      throw new Error(`The Secrets view could not be loaded (${error.message}); reload the page.`);
    });
  return secretsLoading;
}

// The Workflows view (workflows, run form, run pages) is loaded when first opened, too.
let workflows = null;
let workflowsLoading = null;

function loadWorkflowsView() {
  workflowsLoading ||= import("./workflows.js")
    .then((module) => {
      workflows = module.createWorkflowsView({ canRun: hasEditorRole, openFile: openInEditor });
      return workflows;
    })
    .catch((error) => {
      workflowsLoading = null;
      throw new Error(`The Workflows view could not be loaded (${error.message}); reload the page.`);
    });
  return workflowsLoading;
}

// The Deployments view (sites, history, deploy form, deployment pages), loaded when first opened.
let deployments = null;
let deploymentsLoading = null;

function loadDeploymentsView() {
  deploymentsLoading ||= import("./deployments.js")
    .then((module) => {
      deployments = module.createDeploymentsView({ isAdmin: hasAdminRole });
      return deployments;
    })
    .catch((error) => {
      deploymentsLoading = null;
      throw new Error(`The Deployments view could not be loaded (${error.message}); reload the page.`);
    });
  return deploymentsLoading;
}

async function openInEditor(path) {
  leaveRoute();
  showView("editor");
  await loadTree();
  if (!treeView.model.get(path)) {
    toast(`${path} is not in the workspace any more.`, { kind: "error" });
    return;
  }
  treeView.reveal(path);
  await openFile(path);
}

// Only the Workflows view (#/workflows/NAME, #/runs/ID) and the Deployments view
// (#/deployments, #/sites/NAME, #/deployments/ID) have addresses, so their pages can be linked
// and survive a reload; the other views are reached through their tabs.
const ROUTES = [
  [/^#\/(workflows|runs)(\/|$)/, "workflows"],
  [/^#\/(deployments|sites)(\/|$)/, "deployments"],
];
const ROUTED_VIEWS = ROUTES.map(([, view]) => view);

/** The view a hash belongs to, or null. */
const routedView = (hash) => ROUTES.find(([pattern]) => pattern.test(hash))?.[1] || null;

let routed = null; // the hash last shown: popstate and hashchange both announce a navigation

function route() {
  if (!session.signedIn) return; // the sign-in panel is showing: routed when it is done
  const view = routedView(location.hash);
  if (view) {
    if (routed === location.hash && !$(`view-${view}`).hidden) return;
    routed = location.hash;
    showView(view);
  } else {
    routed = null;
    if (ROUTED_VIEWS.some((name) => !$(`view-${name}`).hidden)) showView("editor");
  }
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash; // hashchange routes
}

/** Leaving a view with addresses: drop its address, so a reload does not bring it back. */
function leaveRoute() {
  if (location.hash) history.pushState(null, "", location.pathname + location.search);
}

const VIEWS = ["editor", "workflows", "deployments", "github", "secrets", "health"];

function showView(name) {
  for (const view of VIEWS) {
    $(`view-${view}`).hidden = view !== name;
    $(`tab-${view}`).setAttribute("aria-selected", String(view === name));
  }
  if (name === "workflows") {
    const hash = location.hash;
    loadWorkflowsView().then(
      (view) => view.setVisible(!$("view-workflows").hidden, location.hash || hash),
      (error) => showError(error, "Workflows"),
    );
  } else {
    workflows?.setVisible(false);
  }
  if (name === "deployments") {
    const hash = location.hash;
    loadDeploymentsView().then(
      (view) => view.setVisible(!$("view-deployments").hidden, location.hash || hash),
      (error) => showError(error, "Deployments"),
    );
  } else {
    deployments?.setVisible(false);
  }
  if (name === "github") {
    loadGithubView().then(
      (view) => view.setVisible(!$("view-github").hidden),
      (error) => showError(error, "GitHub"),
    );
  } else {
    github?.setVisible(false);
  }
  if (name === "secrets") {
    loadSecretsView().then(
      (view) => view.setVisible(!$("view-secrets").hidden),
      (error) => showError(error, "Secrets"),
    );
  }
  if (name === "health") health.refresh();
}

for (const name of ["editor", "github", "secrets", "health"]) {
  $(`tab-${name}`).addEventListener("click", () => {
    leaveRoute();
    showView(name);
  });
}
$("tab-workflows").addEventListener("click", () => {
  routed = null; // opening the tab reads the workflows again, even when it is open
  navigate(workflows ? workflows.lastHash() : "#/workflows");
});
$("tab-deployments").addEventListener("click", () => {
  routed = null; // opening the tab reads the sites again, even when it is open
  navigate(deployments ? deployments.lastHash() : "#/deployments");
});
window.addEventListener("hashchange", route);
window.addEventListener("popstate", route);

function setupSplitter() {
  const workbench = $("workbench");
  const saved = Number(localStorage.getItem("slipway.sidebar.width"));
  if (saved >= 160 && saved <= 800) workbench.style.setProperty("--sidebar-width", `${saved}px`);
  $("splitter").addEventListener("pointerdown", (down) => {
    down.preventDefault();
    const splitter = down.currentTarget;
    splitter.setPointerCapture(down.pointerId);
    const left = workbench.getBoundingClientRect().left;
    const onMove = (move) => {
      const width = Math.max(160, Math.min(800, move.clientX - left));
      workbench.style.setProperty("--sidebar-width", `${width}px`);
    };
    const onUp = (up) => {
      splitter.releasePointerCapture(up.pointerId);
      splitter.removeEventListener("pointermove", onMove);
      splitter.removeEventListener("pointerup", onUp);
      localStorage.setItem("slipway.sidebar.width", String(Math.round(parseFloat(getComputedStyle(workbench).getPropertyValue("--sidebar-width")))));
    };
    splitter.addEventListener("pointermove", onMove);
    splitter.addEventListener("pointerup", onUp);
  });
}

window.addEventListener(
  "keydown",
  (event) => {
    if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "s") {
      event.preventDefault(); // never the browser's "Save page"
      if (!dialogOpen() && state.doc && state.doc.kind === "text") {
        if (state.doc.dirty) save();
        else $("status-save").textContent = "No changes to save";
      }
    }
  },
  true,
);

window.addEventListener("beforeunload", (event) => {
  if (state.doc && state.doc.kind === "text" && state.doc.dirty) {
    event.preventDefault();
    event.returnValue = "";
  }
});

$("btn-new-file").addEventListener("click", createFile);
$("btn-new-folder").addEventListener("click", createFolder);
$("btn-rename").addEventListener("click", renameSelected);
$("btn-delete").addEventListener("click", deleteSelected);
$("btn-save").addEventListener("click", () => save());
$("btn-refresh").addEventListener("click", async () => {
  if (await loadTree()) toast("Tree reloaded.", { timeout: 1500 });
});
$("btn-archive").href = api.archiveUrl;

// --- downloads ----------------------------------------------------------------------------------
// Without a token a download is a plain link (the browser streams it to disk). A link cannot
// send the token, so with one the file is fetched with the header and saved from memory.

async function saveDownload(url, name) {
  try {
    await api.download(url, name);
  } catch (error) {
    showError(error, `Could not download ${name || "the file"}`);
  }
}

function downloadLink(url, name) {
  if (api.usesToken()) {
    saveDownload(url, name);
    return;
  }
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
}

// Every download link of the page (the workspace zip, a binary file, the backup before
// connecting GitHub) is an <a download> to the API.
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || !api.usesToken()) return;
  const link = event.target instanceof Element ? event.target.closest("a[download]") : null;
  if (!link) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/api/")) return;
  event.preventDefault();
  saveDownload(url.pathname + url.search, link.getAttribute("download") || "");
});

// --- signing in ---------------------------------------------------------------------------------
// /api/me answering 401 means no credentials the API accepts: the sign-in panel replaces the
// app. Behind a Static Web App it offers the platform's Microsoft sign-in; everywhere it takes
// the deployment's API token. A later 401 (the token revoked or changed, the sign-in expired)
// brings the panel back; signing in again returns to the app as it was (unsaved text included).

const session = {
  entered: false, // the app was shown once (its views exist, the editor is loading)
  signedIn: false, // the app is shown, not the sign-in panel
  swa: null, // Promise<boolean>: served by a Static Web App
};

const staticWebApp = () => (session.swa ||= api.staticWebApp());
const returnTo = () => location.pathname + location.search + location.hash;

function setPrincipal(principal) {
  state.me = principal;
  state.meFailed = false;
  const roles = principal.roles.length ? principal.roles.join(", ") : "no role";
  $("who").textContent = `${principal.name} · ${roles}`;
}

/** The header's sign-out: a button with a token, the platform's logout behind a Static Web App. */
async function renderSignOut() {
  const button = $("sign-out");
  const link = $("sign-out-swa");
  button.hidden = !api.usesToken();
  link.hidden = true;
  const provider = state.me?.provider;
  if (api.usesToken() || !provider || ["development", "token", "functionkey"].includes(provider)) return;
  link.hidden = !(await staticWebApp()) || api.usesToken();
}

/** Close the open dialogs as Escape would: their work needs the sign-in that was just lost. */
function dismissDialogs() {
  for (const dialog of document.querySelectorAll("dialog[open]")) {
    dialog.dispatchEvent(new Event("cancel", { cancelable: true }));
  }
}

function showSignIn(message) {
  const wasSignedIn = session.signedIn;
  session.signedIn = false;
  closeMenu();
  // The views stop reading (run page, history and GitHub polls); they start again on return.
  workflows?.setVisible(false);
  deployments?.setVisible(false);
  github?.setVisible(false);
  // After the 401 has reached the dialog that caused it, so its work has ended.
  setTimeout(dismissDialogs, 0);
  $("app").hidden = true;
  $("signin").hidden = false;
  const note = $("signin-message");
  if (message && (wasSignedIn || note.hidden)) {
    const unsaved = state.doc && state.doc.kind === "text" && state.doc.dirty;
    note.textContent = unsaved ? `${message} Your unsaved changes to ${state.doc.path} stay in the editor.` : message;
    note.hidden = false;
  }
  $("signin-error").hidden = true;
  const swa = $("signin-swa");
  swa.href = api.swaLoginUrl(returnTo());
  staticWebApp().then((served) => {
    swa.hidden = !served;
    $("signin-or").hidden = !served;
  });
  $("signin-token").focus();
}

function unauthorized(error, { hadToken }) {
  if (hadToken) {
    showSignIn(`The API token was refused (${error.message}); this tab no longer keeps it. Sign in again.`);
  } else if (session.entered) {
    showSignIn(`You are signed out (${error.message}). Sign in again.`);
  } else {
    showSignIn(null);
  }
}

function currentView() {
  return VIEWS.find((name) => $(`tab-${name}`).getAttribute("aria-selected") === "true") || "editor";
}

/** Show the app for `principal` (null: /api/me failed otherwise) and (re)load what it shows. */
async function enter(principal, tree = null) {
  const returning = session.entered;
  session.entered = true;
  session.signedIn = true;
  $("signin").hidden = true;
  $("signin-message").hidden = true;
  $("app").hidden = false;
  if (principal) setPrincipal(principal);
  renderSignOut();
  if (returning) {
    const view = currentView();
    routed = null;
    if (ROUTED_VIEWS.includes(view)) route();
    else showView(view);
  } else if (routedView(location.hash)) {
    route(); // a link to a run, a workflow, a site or a deployment
  }
  await (tree || loadTree());
  if (!session.signedIn) return;
  applyPermissions();
  github?.render(); // the actions depend on the roles just read
  secrets?.render();
  workflows?.render();
  deployments?.render();
  updateSelectionButtons();
  if (!returning) {
    // Fetch the editor while the user looks at the tree, so the first file opens at once.
    const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 200));
    idle(() => ensureEditor().catch((error) => showError(error, "Editor")));
  }
}

$("signin-token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("signin-token");
  const submit = $("signin-submit");
  const problem = $("signin-error");
  problem.hidden = true;
  submit.disabled = true;
  try {
    const principal = await api.signInWithToken(input.value);
    input.value = "";
    await enter(principal);
  } catch (error) {
    problem.textContent =
      error.status === 401
        ? `The token was refused: ${error.message}.`
        : error.status === 0
          ? error.message
          : `Could not sign in: ${error.message}`;
    problem.hidden = false;
    input.focus();
    input.select();
  } finally {
    submit.disabled = false;
  }
});

$("signin-swa").addEventListener("click", (event) => {
  event.currentTarget.href = api.swaLoginUrl(returnTo()); // where the user is now
});

$("sign-out").addEventListener("click", () => {
  api.forgetToken();
  showSignIn("You signed out; this tab no longer keeps the API token.");
});

// --- start ------------------------------------------------------------------------------------

async function start() {
  hydrateIcons();
  setupSplitter();
  showPane("placeholder");
  applyPermissions();
  updateSelectionButtons();
  api.onUnauthorized(unauthorized);
  // The tree is read alongside /api/me; when that says 401 the tree's 401 is not reported.
  const tree = loadTree();
  let principal = null;
  try {
    principal = await api.getMe();
  } catch (error) {
    if (error.signedOut) return; // the sign-in panel is showing
    state.meFailed = true;
    $("who").textContent = "unknown user";
    showError(error, "Could not read who you are (/api/me)");
  }
  await enter(principal, tree);
}

start();
