// Modal dialogs on <dialog>: a question with buttons, optionally a text field, optionally a
// custom body (the compare view). A button with `run` keeps the dialog open while it works and
// shows its error inside the dialog, so the user can correct the input and try again.

let openCount = 0;

/** True while any modal dialog is showing (global shortcuts stand aside). */
export const dialogOpen = () => openCount > 0;

/**
 * @param {object} options
 * @param {string} options.title
 * @param {string|Node} [options.message]
 * @param {{label: string, value?: string, placeholder?: string, select?: [number, number]}} [options.input]
 * @param {{label: string, value: string, kind?: "primary"|"danger"|"secondary", focus?: boolean,
 *          run?: (input: string) => Promise<unknown>}[]} options.buttons
 * @param {boolean} [options.wide]
 * @param {string} [options.className]
 * @param {(dialog: HTMLDialogElement) => void} [options.onOpen]
 * @param {() => void} [options.onClose]
 * @returns {Promise<{value: string, input: string, result: unknown} | null>} null when dismissed
 */
export function showDialog(options) {
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.className = ["dialog", options.wide ? "wide" : "", options.className || ""].join(" ").trim();
    const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
    dialog.setAttribute("aria-labelledby", titleId);

    const title = document.createElement("h2");
    title.id = titleId;
    title.textContent = options.title;
    dialog.append(title);

    if (options.message) {
      const message = document.createElement("div");
      message.className = "dialog-message";
      if (typeof options.message === "string") message.textContent = options.message;
      else message.append(options.message);
      dialog.append(message);
    }

    let field = null;
    if (options.input) {
      const label = document.createElement("label");
      label.className = "dialog-field";
      const caption = document.createElement("span");
      caption.textContent = options.input.label;
      field = document.createElement("input");
      field.type = "text";
      field.spellcheck = false;
      field.autocomplete = "off";
      field.value = options.input.value || "";
      field.placeholder = options.input.placeholder || "";
      label.append(caption, field);
      dialog.append(label);
    }

    const error = document.createElement("p");
    error.className = "dialog-error";
    error.setAttribute("role", "alert");
    error.hidden = true;
    dialog.append(error);

    const footer = document.createElement("div");
    footer.className = "dialog-buttons";
    const buttons = options.buttons.map((spec) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = spec.label;
      button.dataset.value = spec.value;
      if (spec.kind) button.classList.add(spec.kind);
      button.addEventListener("click", () => choose(spec));
      footer.append(button);
      return button;
    });
    dialog.append(footer);

    let busy = false;
    let settled = false;

    function finish(result) {
      if (settled) return;
      settled = true;
      openCount -= 1;
      dialog.close();
      dialog.remove();
      options.onClose?.();
      resolve(result);
    }

    async function choose(spec) {
      if (busy) return;
      const input = field ? field.value : "";
      if (!spec.run) {
        finish(spec.value === "cancel" ? null : { value: spec.value, input, result: undefined });
        return;
      }
      busy = true;
      error.hidden = true;
      for (const button of buttons) button.disabled = true;
      dialog.classList.add("busy");
      try {
        const result = await spec.run(input);
        finish({ value: spec.value, input, result });
      } catch (failure) {
        error.textContent = failure && failure.message ? failure.message : String(failure);
        error.hidden = false;
        field?.focus();
      } finally {
        busy = false;
        dialog.classList.remove("busy");
        for (const button of buttons) button.disabled = false;
      }
    }

    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      if (!busy) finish(null);
    });
    field?.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        const primary = options.buttons.find((b) => b.kind === "primary" || b.kind === "danger");
        if (primary) choose(primary);
      }
    });

    document.body.append(dialog);
    openCount += 1;
    dialog.showModal();
    options.onOpen?.(dialog);
    if (field) {
      field.focus();
      const [start, end] = options.input.select || [field.value.length, field.value.length];
      field.setSelectionRange(start, end);
    } else {
      const index = Math.max(0, options.buttons.findIndex((b) => b.focus));
      buttons[index]?.focus();
    }
  });
}

/** A sentence with parts in <strong>, built without innerHTML: ["Delete ", {strong: path}, "?"]. */
export function sentence(...parts) {
  const p = document.createElement("p");
  for (const part of parts) {
    if (typeof part === "string") p.append(part);
    else {
      const strong = document.createElement("strong");
      strong.textContent = part.strong;
      p.append(strong);
    }
  }
  return p;
}

/** Several paragraphs as one message node. */
export function paragraphs(...nodes) {
  const wrapper = document.createElement("div");
  wrapper.append(...nodes.filter(Boolean));
  return wrapper;
}

/**
 * Count a dialog built by hand (not through showDialog) as open, so global shortcuts stand
 * aside; call the returned function once when it closes.
 */
export function holdDialogOpen() {
  openCount += 1;
  let released = false;
  return () => {
    if (!released) {
      released = true;
      openCount -= 1;
    }
  };
}
