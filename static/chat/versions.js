// Actions under a message, ChatGPT/LibreChat style: an edit pencil on the user's messages,
// regenerate on the latest answer, copy on every answer, and ‹ 2/3 › to switch between the
// versions of a message (edits of it, or regenerated answers). Kept out of view.js:
// MessageList calls `decorate(bubble, article)` after building a bubble, and the page
// passes the handlers (app.js).
//
// A bubble's `versions` is the server's `{position, count, sequences}` (null without
// siblings). The buttons carry data-action; clicks are delegated to the list. Glyphs and
// the hover label are drawn from data-icon / data-label by CSS, so a message's text stays
// its own (with "2/3" when it has versions). An answer
// also shows, on hover, the model and mode it was written with.

import { el } from "./dom.js";
import { choiceLabel } from "./picker.js";

// The markdown source of an answer's text parts (what "Copy" puts on the clipboard).
export function answerText(bubble) {
  return (bubble.parts || [])
    .filter((part) => part.kind === "text" && part.text)
    .map((part) => part.text)
    .join("\n\n");
}

function versionSwitcher(bubble) {
  const versions = bubble.versions;
  if (!versions || versions.count < 2) return null;
  const { position, count } = versions;
  return el(
    "span",
    { class: "versions", "data-testid": "versions" },
    el("button", { type: "button", class: "icon-action", "data-action": "version-prev", "aria-label": "Previous version", disabled: position <= 1, "data-icon": "‹" }),
    el("span", { class: "versions-label", "data-testid": "versions-label", title: `Version ${position} of ${count}`, text: `${position}/${count}` }),
    el("button", { type: "button", class: "icon-action", "data-action": "version-next", "aria-label": "Next version", disabled: position >= count, "data-icon": "›" }),
  );
}

// The action row of a bubble (null for bubbles that have none: alerts, unsaved ones).
export function messageActions(bubble, { extra = [] } = {}) {
  if (bubble.role === "user") {
    if (bubble.sequence === undefined || bubble.inFlight) return null;
    return el(
      "div",
      { class: "msg-actions", "data-testid": "message-actions" },
      versionSwitcher(bubble),
      el("button", { type: "button", class: "icon-action version-action", "data-action": "edit", "aria-label": "Edit message", title: "Edit", "data-testid": "edit-message", "data-icon": "✎" }),
    );
  }
  if (bubble.role !== "assistant" || bubble.live) return null;
  return el(
    "div",
    { class: "msg-actions", "data-testid": "message-actions" },
    versionSwitcher(bubble),
    answerText(bubble)
      ? el("button", { type: "button", class: "icon-action", "data-action": "copy-answer", "aria-label": "Copy answer", title: "Copy", "data-testid": "copy-answer", "data-icon": "Copy" })
      : null,
    bubble.sequence !== undefined
      ? el("button", { type: "button", class: "icon-action version-action", "data-action": "regenerate", "aria-label": "Regenerate answer", title: "Regenerate", "data-testid": "regenerate", "data-icon": "↻" })
      : null,
    bubble.model ? el("span", { class: "msg-meta", "data-testid": "answer-choice", title: choiceLabel(bubble.model, bubble.mode), "data-label": choiceLabel(bubble.model, bubble.mode) }) : null,
    ...extra,
  );
}

// The message being edited: {sequence, draft}. It survives the list being rebuilt (a reload
// from the database makes new elements): `decorate` reopens the editor with the draft.
let editing = null;

export function isEditing(bubble) {
  return Boolean(editing && bubble.role === "user" && bubble.sequence === editing.sequence);
}

export function stopEditing() {
  editing = null;
}

// The inline editor that replaces a user message's text while it is edited.
export function startEdit(article, bubble, { onSubmit }) {
  if (article.querySelector("form.edit-form")) {
    article.querySelector("textarea").focus();
    return;
  }
  if (!isEditing(bubble)) editing = { sequence: bubble.sequence, draft: bubble.text };
  const body = article.querySelector(".msg-body");
  const actions = article.querySelector(".msg-actions");
  const area = el("textarea", { class: "edit-input", rows: "3", "aria-label": "Edit your message", "data-testid": "edit-input" });
  area.value = editing.draft;
  const cancel = el("button", { type: "button", class: "secondary", "data-testid": "edit-cancel", text: "Cancel" });
  const save = el("button", { type: "submit", "data-testid": "edit-submit", text: "Send" });
  const form = el("form", { class: "edit-form", "data-testid": "edit-form" }, area, el("div", { class: "row edit-buttons" }, cancel, save));
  const close = () => {
    editing = null;
    form.remove();
    body.hidden = false;
    if (actions) actions.hidden = false;
  };
  cancel.addEventListener("click", close);
  area.addEventListener("input", () => {
    if (editing) editing.draft = area.value;
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = area.value;
    if (!text.trim()) return;
    close();
    onSubmit(text);
  });
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  body.hidden = true;
  if (actions) actions.hidden = true;
  body.after(form);
  // Built before the article is in the page (a rebuild): focus once it is.
  const focus = () => {
    if (!area.isConnected) return;
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  };
  if (article.isConnected) focus();
  else requestAnimationFrame(focus);
}

// Delegated clicks on the action rows: handlers {onEdit(bubble, article), onRegenerate(bubble),
// onSwitch(sequence), onCopy(bubble, button)}; `bubbleOf(article)` finds a row's bubble.
export function bindActions(container, bubbleOf, handlers) {
  container.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !container.contains(button) || button.disabled) return;
    const article = button.closest("article.msg");
    const bubble = article ? bubbleOf(article) : null;
    if (!bubble) return;
    const action = button.dataset.action;
    if (action === "edit") handlers.onEdit(bubble, article);
    else if (action === "regenerate") handlers.onRegenerate(bubble);
    else if (action === "copy-answer") handlers.onCopy(bubble, button);
    else if (action === "version-prev" || action === "version-next") {
      const { position, sequences } = bubble.versions;
      const target = sequences[position - 1 + (action === "version-next" ? 1 : -1)];
      if (target !== undefined) handlers.onSwitch(target);
    }
  });
}
