// Markdown for assistant messages: marked (GFM) → DOMPurify → code blocks with
// highlighting and a copy button. Raw HTML in a message is shown as text, links
// keep only http(s) and mailto targets, and images become plain links, so a message
// carrying <script>, onerror= or javascript: renders inert.
import { Marked } from "../vendor/marked/marked.esm.js";
import { highlightElement } from "./syntax.js";

const DOMPurify = window.DOMPurify; // static/vendor/dompurify/purify.min.js, loaded by the page

const escapeHtml = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const marked = new Marked({ gfm: true, breaks: true, async: false });
marked.use({
  renderer: {
    html({ text }) {
      return escapeHtml(text);
    },
    checkbox({ checked }) {
      return checked ? "☑ " : "☐ ";
    },
    image({ href, text }) {
      const label = escapeHtml(text || href || "image");
      return href ? `<a href="${escapeHtml(href)}">${label}</a>` : label;
    },
  },
});

const ALLOWED_TAGS = [
  "a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
  "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead",
  "tr", "ul",
];
const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ["href", "title", "class", "align", "start", "colspan", "rowspan"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

let hooked = false;
function installHooks() {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      if (node.getAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      } else {
        node.removeAttribute("href");
      }
    }
  });
}

function enhanceCodeBlocks(fragment) {
  for (const code of fragment.querySelectorAll("pre > code")) {
    const pre = code.parentElement;
    const match = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className || "");
    const lang = match ? match[1] : "";
    highlightElement(code, lang);
    const wrapper = document.createElement("div");
    wrapper.className = "codeblock";
    const head = document.createElement("div");
    head.className = "codeblock-head";
    const label = document.createElement("span");
    label.textContent = lang || "code";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy-code";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", `Copy ${lang || "code"} to the clipboard`);
    head.append(label, copy);
    pre.replaceWith(wrapper);
    wrapper.append(head, pre);
  }
  for (const table of fragment.querySelectorAll("table")) {
    const scroller = document.createElement("div");
    scroller.className = "table-scroll";
    table.replaceWith(scroller);
    scroller.append(table);
  }
  return fragment;
}

// Markdown source → a sanitised DocumentFragment.
export function renderMarkdown(source) {
  installHooks();
  const html = marked.parse(String(source ?? ""));
  return enhanceCodeBlocks(DOMPurify.sanitize(html, PURIFY_CONFIG));
}

// The end of the last complete block: just after a blank line that is outside a
// code fence. Everything before it will not change as more text streams in.
export function stableBoundary(text) {
  let inFence = false;
  let fence = "";
  let boundary = 0;
  let position = 0;
  let previousBlank = false;
  for (const line of text.split("\n")) {
    const end = position + line.length + 1;
    const marker = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (marker) {
      if (!inFence) {
        inFence = true;
        fence = marker[1][0];
      } else if (marker[1][0] === fence) {
        inFence = false;
      }
    }
    const blank = line.trim() === "";
    if (!inFence && blank && !previousBlank && end <= text.length && position > 0) boundary = end;
    previousBlank = blank;
    position = end;
  }
  return Math.min(boundary, text.length);
}

// Renders a streaming markdown text into `element`: completed blocks are rendered
// once and kept; only the unfinished last block is re-rendered as text arrives.
export class MarkdownView {
  constructor(element) {
    this.element = element;
    this.stableLength = 0;
    this.tailNodes = [];
    this.text = "";
  }

  update(text, { final = false } = {}) {
    if (final || text.length < this.stableLength || !text.startsWith(this.text.slice(0, this.stableLength))) {
      this.element.replaceChildren(renderMarkdown(text));
      this.stableLength = final ? text.length : 0;
      this.tailNodes = final ? [] : [...this.element.childNodes];
      this.text = text;
      return;
    }
    for (const node of this.tailNodes) node.remove();
    const boundary = stableBoundary(text);
    if (boundary > this.stableLength) {
      this.element.append(renderMarkdown(text.slice(this.stableLength, boundary)));
      this.stableLength = boundary;
    }
    const tail = renderMarkdown(text.slice(this.stableLength));
    this.tailNodes = [...tail.childNodes];
    this.element.append(tail);
    this.text = text;
  }
}
