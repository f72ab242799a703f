// The workspace tree: a model built once from the API's flat, sorted list, and a virtualized
// view that renders only the rows in sight (a fixed row height makes every row's position a
// multiplication), so 5,000 files cost the same DOM as 50.
import { icon } from "./icons.js";
import { basename, dirname, isWithin } from "./paths.js";

export const ROW_HEIGHT = 24;
const OVERSCAN = 8;
const INDENT = 14;
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

function byKindThenName(a, b) {
  const folderA = a.type === "folder" ? 0 : 1;
  const folderB = b.type === "folder" ? 0 : 1;
  return folderA - folderB || collator.compare(a.name, b.name) || (a.name < b.name ? -1 : 1);
}

export class TreeModel {
  constructor(entries = []) {
    this.root = { path: "", name: "", type: "folder", children: [], parent: null, depth: -1 };
    this.nodes = new Map([["", this.root]]);
    this.files = 0;
    this.folders = 0;
    for (const entry of entries) this.#add(entry);
    for (const node of this.nodes.values()) if (node.children) node.children.sort(byKindThenName);
  }

  get(path) {
    return this.nodes.get(path);
  }

  #folder(path) {
    let node = this.nodes.get(path);
    if (node) return node;
    // A parent the list did not name (it should): make it, so no entry is orphaned.
    const parent = this.#folder(dirname(path));
    node = { path, name: basename(path), type: "folder", entry: null, children: [], parent, depth: parent.depth + 1 };
    parent.children.push(node);
    this.nodes.set(path, node);
    this.folders += 1;
    return node;
  }

  #add(entry) {
    if (!entry.path) return;
    if (entry.type === "folder") {
      this.#folder(entry.path).entry = entry;
      return;
    }
    const parent = this.#folder(dirname(entry.path));
    const node = {
      path: entry.path,
      name: basename(entry.path),
      type: entry.type,
      entry,
      children: null,
      parent,
      depth: parent.depth + 1,
    };
    parent.children.push(node);
    this.nodes.set(entry.path, node);
    if (entry.type === "file") this.files += 1;
  }

  /** Files and folders inside a folder, all the way down. */
  countWithin(path) {
    let files = 0;
    let folders = 0;
    const stack = [...(this.nodes.get(path)?.children || [])];
    while (stack.length) {
      const node = stack.pop();
      if (node.children) {
        folders += 1;
        stack.push(...node.children);
      } else {
        files += 1;
      }
    }
    return { files, folders };
  }
}

const EXPANDED_KEY = "slipway.tree.expanded";

export class TreeView {
  /**
   * @param {HTMLElement} viewport the scrolling, focusable element (role=tree)
   * @param {{onOpen: (node) => void, onSelect?: (node) => void, onContextMenu?: (node, event) => void,
   *          onKey?: (key: string, node) => boolean, decorate?: (node) => {dirty?: boolean, open?: boolean}}} handlers
   */
  constructor(viewport, handlers) {
    this.viewport = viewport;
    this.handlers = handlers;
    this.model = new TreeModel();
    this.rows = [];
    this.selected = null;
    this.expanded = new Set(this.#loadExpanded());
    this.typeahead = { text: "", at: 0 };

    this.spacer = document.createElement("div");
    this.spacer.className = "tree-spacer";
    this.layer = document.createElement("div");
    this.layer.className = "tree-layer";
    this.spacer.append(this.layer);
    this.empty = document.createElement("div");
    this.empty.className = "tree-empty";
    this.empty.hidden = true;
    this.viewport.append(this.spacer, this.empty);

    let frame = 0;
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(() => {
        frame = 0;
        this.render();
      });
    };
    this.viewport.addEventListener("scroll", schedule, { passive: true });
    new ResizeObserver(schedule).observe(this.viewport);
    this.viewport.addEventListener("click", (event) => this.#onClick(event));
    this.viewport.addEventListener("contextmenu", (event) => this.#onContextMenu(event));
    this.viewport.addEventListener("keydown", (event) => this.#onKey(event));
  }

  setModel(model, emptyText = "The workspace is empty.") {
    this.model = model;
    if (this.selected !== null && !model.get(this.selected)) this.selected = null;
    this.empty.textContent = emptyText;
    this.refresh();
  }

  /** Recompute the visible rows (after expand/collapse or a new model) and draw them. */
  refresh() {
    const rows = [];
    const stack = [...this.model.root.children].reverse();
    while (stack.length) {
      const node = stack.pop();
      rows.push(node);
      if (node.children && this.expanded.has(node.path)) {
        for (let i = node.children.length - 1; i >= 0; i -= 1) stack.push(node.children[i]);
      }
    }
    this.rows = rows;
    this.empty.hidden = rows.length > 0;
    this.spacer.style.height = `${rows.length * ROW_HEIGHT}px`;
    this.render();
  }

  render() {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 800;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const fragment = document.createDocumentFragment();
    let active = null;
    for (let index = first; index < last; index += 1) {
      const row = this.#row(this.rows[index], index);
      if (this.rows[index].path === this.selected) active = row.id;
      fragment.append(row);
    }
    this.layer.replaceChildren(fragment);
    if (active) this.viewport.setAttribute("aria-activedescendant", active);
    else this.viewport.removeAttribute("aria-activedescendant");
  }

  #row(node, index) {
    const row = document.createElement("div");
    const isFolder = node.type === "folder";
    const open = isFolder && this.expanded.has(node.path);
    const marks = this.handlers.decorate?.(node) || {};
    row.className = "tree-row";
    row.id = `tree-row-${index}`;
    row.setAttribute("role", "treeitem");
    row.setAttribute("aria-level", String(node.depth + 1));
    row.setAttribute("aria-selected", String(node.path === this.selected));
    if (isFolder) row.setAttribute("aria-expanded", String(open));
    row.dataset.path = node.path;
    row.dataset.type = node.type;
    row.dataset.index = String(index);
    row.style.top = `${index * ROW_HEIGHT}px`;
    row.style.paddingLeft = `${6 + node.depth * INDENT}px`;
    if (node.path === this.selected) row.classList.add("selected");
    if (marks.open) row.classList.add("open");
    if (marks.dirty) row.classList.add("dirty");
    if (node.type === "symlink") {
      row.classList.add("symlink");
      row.title = `${node.path} is a symbolic link; it cannot be opened here.`;
    } else {
      row.title = node.path;
    }
    const twisty = isFolder ? `<span class="twisty${open ? " open" : ""}">${icon("chevron")}</span>` : '<span class="twisty"></span>';
    const glyph = isFolder ? (open ? "folderOpen" : "folder") : node.type === "symlink" ? "link" : "file";
    row.innerHTML = `${twisty}<span class="row-icon ${glyph}">${icon(glyph)}</span><span class="row-name"></span>${marks.dirty ? '<span class="row-dirty" title="Unsaved changes">●</span>' : ""}`;
    row.querySelector(".row-name").textContent = node.name;
    return row;
  }

  // --- expand state --------------------------------------------------------------------------

  #loadExpanded() {
    try {
      const saved = JSON.parse(localStorage.getItem(EXPANDED_KEY) || "[]");
      return Array.isArray(saved) ? saved.filter((p) => typeof p === "string") : [];
    } catch {
      return [];
    }
  }

  #saveExpanded() {
    try {
      localStorage.setItem(EXPANDED_KEY, JSON.stringify([...this.expanded]));
    } catch {
      // Storage full or disabled: the expand state just does not survive a reload.
    }
  }

  setExpanded(path, open) {
    if (open === this.expanded.has(path)) return;
    if (open) this.expanded.add(path);
    else this.expanded.delete(path);
    this.#saveExpanded();
    this.refresh();
  }

  toggle(path) {
    this.setExpanded(path, !this.expanded.has(path));
  }

  /** After a move: folders that were open under `from` stay open under `to`. */
  renameExpanded(from, to) {
    const renamed = [...this.expanded].map((p) => (isWithin(p, from) ? to + p.slice(from.length) : p));
    this.expanded = new Set(renamed);
    this.#saveExpanded();
  }

  forgetExpanded(path) {
    for (const p of [...this.expanded]) if (isWithin(p, path)) this.expanded.delete(p);
    this.#saveExpanded();
  }

  // --- selection -----------------------------------------------------------------------------

  selectedNode() {
    return this.selected === null ? null : this.model.get(this.selected) || null;
  }

  select(path, { scroll = true } = {}) {
    this.selected = path;
    if (scroll) this.scrollTo(path);
    this.render();
    this.handlers.onSelect?.(this.selectedNode());
  }

  /** Open every folder above `path`, select it and bring it into view. */
  reveal(path) {
    let folder = dirname(path);
    let changed = false;
    while (folder) {
      if (!this.expanded.has(folder)) {
        this.expanded.add(folder);
        changed = true;
      }
      folder = dirname(folder);
    }
    if (changed) {
      this.#saveExpanded();
      this.refresh();
    }
    this.select(path);
  }

  scrollTo(path) {
    const index = this.rows.findIndex((node) => node.path === path);
    if (index < 0) return;
    const top = index * ROW_HEIGHT;
    const view = this.viewport;
    if (top < view.scrollTop) view.scrollTop = top;
    else if (top + ROW_HEIGHT > view.scrollTop + view.clientHeight) view.scrollTop = top + ROW_HEIGHT - view.clientHeight;
  }

  // --- events --------------------------------------------------------------------------------

  #nodeOf(event) {
    const row = event.target.closest(".tree-row");
    return row ? this.rows[Number(row.dataset.index)] : null;
  }

  #onClick(event) {
    const node = this.#nodeOf(event);
    if (!node) return;
    this.select(node.path, { scroll: false });
    if (node.type === "folder") this.toggle(node.path);
    else this.handlers.onOpen(node);
  }

  #onContextMenu(event) {
    const node = this.#nodeOf(event);
    if (!this.handlers.onContextMenu) return;
    event.preventDefault();
    if (node) this.select(node.path, { scroll: false });
    this.viewport.focus();
    this.handlers.onContextMenu(node, event);
  }

  #onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const rows = this.rows;
    if (!rows.length) return;
    let index = rows.findIndex((node) => node.path === this.selected);
    const node = index >= 0 ? rows[index] : null;
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / ROW_HEIGHT) - 1);
    const move = (to) => this.select(rows[Math.max(0, Math.min(rows.length - 1, to))].path);
    switch (event.key) {
      case "ArrowDown":
        move(index + 1);
        break;
      case "ArrowUp":
        move(index < 0 ? 0 : index - 1);
        break;
      case "PageDown":
        move(index + page);
        break;
      case "PageUp":
        move(index - page);
        break;
      case "Home":
        move(0);
        break;
      case "End":
        move(rows.length - 1);
        break;
      case "ArrowRight":
        if (!node) move(0);
        else if (node.type === "folder" && !this.expanded.has(node.path)) this.setExpanded(node.path, true);
        else if (node.type === "folder" && node.children.length) move(index + 1);
        break;
      case "ArrowLeft":
        if (!node) move(0);
        else if (node.type === "folder" && this.expanded.has(node.path)) this.setExpanded(node.path, false);
        else if (node.parent && node.parent.path) this.select(node.parent.path);
        break;
      case "Enter":
      case " ":
        if (!node) return;
        if (node.type === "folder") this.toggle(node.path);
        else this.handlers.onOpen(node);
        break;
      default:
        if (this.handlers.onKey?.(event.key, node)) break;
        if (event.key.length === 1 && event.key.trim()) {
          // Type-ahead: jump to the next row whose name starts with what was typed.
          const now = Date.now();
          this.typeahead.text = (now - this.typeahead.at < 800 ? this.typeahead.text : "") + event.key.toLowerCase();
          this.typeahead.at = now;
          const prefix = this.typeahead.text;
          const start = prefix.length > 1 ? Math.max(index, 0) : index + 1;
          for (let step = 0; step < rows.length; step += 1) {
            const candidate = rows[(start + step) % rows.length];
            if (candidate.name.toLowerCase().startsWith(prefix)) {
              this.select(candidate.path);
              break;
            }
          }
          break;
        }
        return;
    }
    event.preventDefault();
  }
}
