// DOM for the message list. Bubbles are keyed by object: an unchanged bubble keeps its
// element; a structural change rebuilds that one bubble; streamed text only touches
// its own part (MarkdownView re-renders just the unfinished block), once per frame.
import { attachmentList } from "./attachments.js";
import { approvalBox } from "./approvals.js";
import { MarkdownView } from "./markdown.js";
import { toolLabel } from "./mcp.js";
import { prettyValue, seconds, toolOutcome, toolSummary } from "./model.js";
import { el } from "./dom.js";

let uniqueId = 0;
const nextId = (prefix) => `${prefix}-${(uniqueId += 1)}`;

export class MessageList {
  constructor(container, { onRetry, decorate } = {}) {
    this.container = container;
    this.onRetry = onRetry;
    this.decorate = decorate; // (bubble, article): adds the action row (versions.js)
    this.entries = new Map(); // bubble → {element, parts: Map(part → {view, element})}
    this.open = new Map(); // "bubbleKey:partKey" → bool, survives rebuilds
    this.dirty = new Set();
    this.frame = 0;
    this.liveTimer = 0;
    container.addEventListener("click", (event) => this.onClick(event));
  }

  // ---- list ---------------------------------------------------------------------

  render(bubbles) {
    const keep = new Set(bubbles);
    for (const [bubble, entry] of this.entries) {
      if (!keep.has(bubble)) {
        entry.element.remove();
        this.entries.delete(bubble);
      }
    }
    let previous = null;
    for (const bubble of bubbles) {
      let entry = this.entries.get(bubble);
      if (!entry) {
        entry = { element: null, parts: new Map() };
        this.entries.set(bubble, entry);
        this.build(bubble, entry);
      }
      const expected = previous ? previous.nextSibling : this.container.firstChild;
      if (expected !== entry.element) {
        if (previous) previous.after(entry.element);
        else this.container.prepend(entry.element);
      }
      previous = entry.element;
    }
    this.tickLiveLabels();
  }

  // A bubble's parts changed shape (new part, new state): rebuild that bubble only.
  rebuild(bubble) {
    const entry = this.entries.get(bubble);
    if (!entry) return;
    const old = entry.element;
    this.build(bubble, entry);
    old.replaceWith(entry.element);
    this.tickLiveLabels();
  }

  // Text or reasoning grew: repaint that part on the next frame.
  touch(bubble, part) {
    this.dirty.add(part);
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        for (const [, entry] of this.entries) {
          for (const [p, view] of entry.parts) {
            if (this.dirty.has(p)) this.paintPart(p, view);
          }
        }
        this.dirty.clear();
      });
    }
  }

  // The user's open/closed choices of one bubble, kept for the bubble that replaces it.
  moveOpenState(fromKey, toKey) {
    if (fromKey === toKey) return;
    for (const [key, value] of [...this.open]) {
      if (key.startsWith(`${fromKey}:`)) this.open.set(`${toKey}${key.slice(fromKey.length)}`, value);
    }
  }

  elementOf(bubble) {
    const entry = this.entries.get(bubble);
    return entry ? entry.element : null;
  }

  bubbleOf(element) {
    for (const [bubble, entry] of this.entries) if (entry.element === element) return bubble;
    return null;
  }

  // ---- building -------------------------------------------------------------------

  build(bubble, entry) {
    entry.parts = new Map();
    if (bubble.role === "user") {
      const files = bubble.attachments || [];
      entry.element = el(
        "article",
        { class: `msg msg-user${bubble.promoted ? " msg-promoted" : ""}`, "data-testid": "user-message", "aria-label": "You said" },
        bubble.text ? el("div", { class: "msg-body", text: bubble.text }) : null,
        files.length ? attachmentList(files) : null,
      );
      if (this.decorate) this.decorate(bubble, entry.element);
      return;
    }
    if (bubble.role === "alert") {
      entry.element = this.buildAlert(bubble);
      return;
    }
    const body = el("div", { class: "msg-body" });
    const article = el(
      "article",
      { class: `msg msg-assistant${bubble.live ? " is-live" : ""}`, "data-testid": "assistant-message", "aria-label": "Copilot said", "aria-busy": bubble.live ? "true" : "false" },
      body,
    );
    const parts = bubble.parts;
    const lastTool = parts.map((p) => p.kind).lastIndexOf("tool");
    const split = lastTool >= 0 ? lastTool + 1 : 0;
    const steps = parts.slice(0, split);
    const answer = parts.slice(split);
    if (steps.length) {
      const key = `${bubble.key}:steps`;
      const asking = steps.some((p) => p.state === "approval"); // never hide an Approve / Deny box
      const open = asking || (this.open.has(key) ? this.open.get(key) : bubble.live);
      const tools = steps.filter((p) => p.kind === "tool").length;
      const id = nextId("steps");
      const toggle = el(
        "button",
        { type: "button", class: "disclosure steps-toggle", "aria-expanded": String(open), "aria-controls": id, "data-open-key": key, "data-testid": "steps-toggle" },
        el("span", { class: "chevron", "aria-hidden": "true", text: "▸" }),
        el("span", { text: `${open ? "Hide" : "Show"} steps` }),
        el("span", { class: "muted", text: ` · ${tools} tool call${tools === 1 ? "" : "s"}` }),
      );
      const stepsBody = el("div", { class: "steps-body", id, hidden: !open });
      for (const part of steps) stepsBody.append(this.buildPart(bubble, part, entry, parts.indexOf(part)));
      body.append(el("div", { class: "steps" }, toggle, stepsBody));
    }
    for (const part of answer) body.append(this.buildPart(bubble, part, entry, parts.indexOf(part)));
    if (bubble.live && !answer.some((p) => p.kind === "text" && p.text)) {
      body.append(el("div", { class: "typing", "aria-hidden": "true" }, el("span"), el("span"), el("span")));
    }
    entry.element = article;
    if (this.decorate) this.decorate(bubble, article);
  }

  buildAlert(bubble) {
    const actions = el("div", { class: "row" });
    for (const action of bubble.actions || []) {
      if (action.href) actions.append(el("a", { class: `button-link${action.secondary ? " secondary" : ""}`, href: action.href, text: action.label }));
      else actions.append(el("button", { type: "button", class: action.secondary ? "secondary" : "", onclick: (event) => action.run(event.currentTarget), text: action.label }));
    }
    return el(
      "div",
      { class: `msg msg-alert tone-${bubble.tone || "error"}`, role: "alert", "data-testid": "chat-alert" },
      el("p", { class: "alert-title", text: bubble.title || "" }),
      bubble.text ? el("p", { class: "alert-text", text: bubble.text }) : null,
      bubble.status ? el("p", { class: "alert-status small", role: "status", text: bubble.status }) : null,
      actions.childNodes.length ? actions : null,
    );
  }

  buildPart(bubble, part, entry, index) {
    const key = `${bubble.key}:${index}`;
    if (part.kind === "text") {
      const element = el("div", { class: "md", "data-testid": "assistant-text" });
      const view = { element, md: new MarkdownView(element), key };
      entry.parts.set(part, view);
      this.paintPart(part, view);
      return element;
    }
    if (part.kind === "reasoning") return this.buildReasoning(bubble, part, entry, key);
    if (part.kind === "tool") return this.buildTool(bubble, part, key);
    if (part.kind === "notice") {
      // A failed turn's stored error keeps its next step while it is the latest answer.
      if (part.tone === "error" && bubble.isLatest) return this.buildError({ text: part.text.replace(/^error:\s*/i, ""), stored: true });
      return el("p", { class: `notice tone-${part.tone}`, "data-testid": "notice", text: part.text });
    }
    if (part.kind === "error") return this.buildError(part);
    return el("span");
  }

  buildReasoning(bubble, part, entry, key) {
    const open = this.open.get(key) === true;
    const id = nextId("reasoning");
    const label = el("span", { class: "reasoning-label" });
    const toggle = el(
      "button",
      { type: "button", class: "disclosure reasoning-toggle", "aria-expanded": String(open), "aria-controls": id, "data-open-key": key, "data-testid": "reasoning-toggle" },
      el("span", { class: "chevron", "aria-hidden": "true", text: "▸" }),
      label,
    );
    const pre = el("pre", { class: "reasoning-text", id, hidden: !open, "data-testid": "reasoning-text" });
    const view = { element: pre, label, bubble, key };
    entry.parts.set(part, view);
    this.paintPart(part, view);
    return el("div", { class: "reasoning", "data-testid": "reasoning" }, toggle, pre);
  }

  buildTool(bubble, part, key) {
    if (part.name === "context_compaction") {
      return el("p", { class: "notice tone-info", text: typeof part.output === "string" && part.output ? part.output : "Earlier messages were summarized to fit within context limits." });
    }
    const open = this.open.get(key) === true;
    const outcome = toolOutcome(part, { live: bubble.live });
    const label = toolLabel(part.name);
    const id = nextId("tool");
    const body = el("div", { class: "tool-body", id, hidden: !open });
    if (part.input !== undefined) body.append(el("div", { class: "tool-section" }, el("h4", { text: "Input" }), el("pre", { text: prettyValue(part.input) })));
    if (part.output !== undefined) body.append(el("div", { class: "tool-section" }, el("h4", { text: "Output" }), el("pre", { text: prettyValue(part.output) })));
    if (!body.childNodes.length) body.append(el("p", { class: "muted small", text: "No details yet." }));
    const asking = part.state === "approval" && bubble.live ? approvalBox(part) : null;
    return el(
      "div",
      { class: `tool tone-${outcome.tone}`, "data-testid": "tool-row", "data-tool-name": part.name, "data-state": part.state },
      el(
        "button",
        { type: "button", class: "disclosure tool-toggle", "aria-expanded": String(open), "aria-controls": id, "data-open-key": key },
        el("span", { class: "chevron", "aria-hidden": "true", text: "▸" }),
        el("span", { class: "tool-icon", "aria-hidden": "true", text: outcome.tone === "running" ? "◌" : outcome.tone === "error" ? "✕" : "✓" }),
        el("span", { class: "tool-name", text: label.tool }),
        label.server ? el("span", { class: "tool-server muted small", "data-testid": "tool-server", title: `From the MCP server ${label.server}`, text: `· ${label.server}` }) : null,
        el("span", { class: "tool-summary", text: toolSummary(part) }),
        el("span", { class: "tool-status", "data-testid": "tool-status", text: outcome.label }),
      ),
      body,
      asking,
    );
  }

  buildError(part) {
    const hints = {
      idle_timeout: "The model stopped responding.",
      tool_round_limit: "The copilot used too many tool steps.",
      stream_locked: "Another reply was still finishing.",
    };
    const hint = hints[part.code] || "";
    return el(
      "div",
      { class: "inline-error", role: "alert", "data-testid": "inline-error" },
      el("p", { text: part.text }),
      el("p", { class: "small muted", text: `${hint ? `${hint} ` : ""}${part.stored ? "" : "What you saw so far is saved. "}You can send your message again.` }),
      this.onRetry ? el("button", { type: "button", class: "secondary", "data-retry": "1", text: "Retry" }) : null,
    );
  }

  paintPart(part, view) {
    if (part.kind === "text") {
      view.md.update(part.text, { final: part.done });
      return;
    }
    if (part.kind === "reasoning") {
      if (view.element.textContent.length <= part.text.length && part.text.startsWith(view.element.textContent)) {
        view.element.append(part.text.slice(view.element.textContent.length));
      } else {
        view.element.textContent = part.text;
      }
      this.paintReasoningLabel(part, view);
    }
  }

  paintReasoningLabel(part, view) {
    const bubble = view.bubble;
    let text;
    if (!part.done) {
      text = `Thinking… ${seconds(Date.now() - (part.startedAt || Date.now()))}s`;
    } else if (part.startedAt && part.endedAt) {
      text = `Thought for ${seconds(part.endedAt - part.startedAt)}s`;
    } else if (bubble && bubble.durationMs) {
      text = `Thought for ${seconds(bubble.durationMs)}s`;
    } else {
      text = "Reasoning";
    }
    const expanded = view.element.hidden ? "Show reasoning" : "Hide reasoning";
    view.label.textContent = text;
    view.label.title = expanded;
    view.label.parentElement.setAttribute("aria-label", `${expanded}: ${text}`);
  }

  // "Thinking… Ns" keeps counting while a reasoning block is open.
  tickLiveLabels() {
    const anyOpen = [...this.entries.values()].some((entry) => [...entry.parts.keys()].some((p) => p.kind === "reasoning" && !p.done));
    if (anyOpen && !this.liveTimer) {
      this.liveTimer = setInterval(() => {
        let still = false;
        for (const entry of this.entries.values()) {
          for (const [p, view] of entry.parts) {
            if (p.kind === "reasoning" && !p.done) {
              still = true;
              this.paintReasoningLabel(p, view);
            }
          }
        }
        if (!still) {
          clearInterval(this.liveTimer);
          this.liveTimer = 0;
        }
      }, 1000);
    }
  }

  // ---- interaction ------------------------------------------------------------------

  onClick(event) {
    const toggle = event.target.closest("button.disclosure");
    if (toggle && this.container.contains(toggle)) {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      const target = document.getElementById(toggle.getAttribute("aria-controls"));
      if (target) target.hidden = !open;
      if (toggle.dataset.openKey) this.open.set(toggle.dataset.openKey, open);
      if (toggle.classList.contains("steps-toggle")) toggle.children[1].textContent = `${open ? "Hide" : "Show"} steps`;
      if (toggle.classList.contains("reasoning-toggle")) {
        const label = toggle.querySelector(".reasoning-label");
        toggle.setAttribute("aria-label", `${open ? "Hide" : "Show"} reasoning: ${label.textContent}`);
      }
      return;
    }
    const copy = event.target.closest("button.copy-code");
    if (copy) {
      const code = copy.closest(".codeblock").querySelector("pre code, pre");
      copyText(code.textContent.replace(/\n$/, "")).then((ok) => {
        copy.textContent = ok ? "Copied" : "Copy failed";
        setTimeout(() => {
          copy.textContent = "Copy";
        }, 1500);
      });
      return;
    }
    if (event.target.closest("button[data-retry]") && this.onRetry) this.onRetry();
  }
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}
