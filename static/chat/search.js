// Chat search: a search box over the sidebar's chat list (GET /api/chat/search).
//
// Typing (debounced) replaces the chat list by the matching chats, each with its title
// and the matched snippet; the server sends plain text and [start, end) highlight ranges
// in code points, and the page builds <mark> elements from text nodes, so a message
// holding HTML is shown as text. Ctrl/Cmd+K focuses the box (opening the sidebar on a
// phone); Escape in it clears the search and shows the chat list again.
import { api, errorText } from "../site/http.js";

const PAGE = 20;
const DEBOUNCE_MS = 200;

// `text` with `ranges` ([start, end) in code points) wrapped in <mark>: a list of nodes.
export function highlighted(text, ranges) {
  const chars = Array.from(text || "");
  const nodes = [];
  let at = 0;
  for (const [start, end] of ranges || []) {
    if (start < at || end <= start || end > chars.length) continue;
    if (start > at) nodes.push(document.createTextNode(chars.slice(at, start).join("")));
    const mark = document.createElement("mark");
    mark.textContent = chars.slice(start, end).join("");
    nodes.push(mark);
    at = end;
  }
  if (at < chars.length) nodes.push(document.createTextNode(chars.slice(at).join("")));
  return nodes;
}

function isShortcut(event) {
  return (event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && event.key.toLowerCase() === "k";
}

// root: the chat page root; hooks: {openSession(id), openSidebar(), closeSidebar(), sessionUrl(id)}.
export function initSearch(root, hooks) {
  const sidebar = root.querySelector("#chat-sidebar");
  const nav = sidebar.querySelector("nav");
  const form = document.createElement("form");
  form.className = "chat-search";
  form.setAttribute("role", "search");
  form.innerHTML = `
    <label for="chat-search-input" class="visually-hidden">Search chats</label>
    <input id="chat-search-input" type="search" placeholder="Search chats" autocomplete="off"
      aria-keyshortcuts="Control+K Meta+K" aria-controls="chat-search-results" data-testid="search-input">
    <kbd class="chat-search-key" aria-hidden="true">Ctrl K</kbd>`;
  const input = form.querySelector("input");
  if (/Mac|iPhone|iPad/.test(navigator.platform || "")) form.querySelector("kbd").textContent = "⌘K";
  const panel = document.createElement("section");
  panel.id = "chat-search-results";
  panel.className = "search-results";
  panel.hidden = true;
  panel.setAttribute("aria-label", "Search results");
  panel.dataset.testid = "search-results";
  panel.innerHTML = `<p class="search-status muted small" role="status" aria-live="polite"></p>
    <ul class="search-list"></ul>
    <button type="button" class="link search-more" hidden>More results</button>`;
  const status = panel.querySelector(".search-status");
  const listEl = panel.querySelector(".search-list");
  const more = panel.querySelector(".search-more");
  sidebar.insertBefore(form, nav);
  sidebar.insertBefore(panel, nav);

  const state = { query: "", results: [], total: 0, timer: 0, request: 0, loading: false };

  function showList(searching) {
    panel.hidden = !searching;
    nav.hidden = searching;
  }

  function renderResults() {
    listEl.replaceChildren(...state.results.map(resultItem));
    more.hidden = state.results.length >= state.total;
    const count = state.total;
    status.textContent = count ? `${count} chat${count === 1 ? "" : "s"} found` : `No chats match “${state.query}”.`;
  }

  function resultItem(result) {
    const li = document.createElement("li");
    li.className = "search-result";
    const link = document.createElement("a");
    link.className = "search-link";
    link.href = hooks.sessionUrl(result.session.id);
    link.dataset.sessionId = result.session.id;
    link.dataset.testid = "search-result";
    const title = document.createElement("span");
    title.className = "search-title";
    title.append(...(result.session.title ? highlighted(result.session.title, result.title_highlights) : [document.createTextNode("Untitled chat")]));
    link.append(title);
    if (result.snippet) {
      const snippet = document.createElement("span");
      snippet.className = "search-snippet";
      snippet.dataset.testid = "search-snippet";
      const who = document.createElement("span");
      who.className = "visually-hidden";
      who.textContent = result.snippet.role === "user" ? "You: " : "Copilot: ";
      snippet.append(who, ...highlighted(result.snippet.text, result.snippet.highlights));
      link.append(snippet);
    }
    li.append(link);
    return li;
  }

  async function run({ append = false } = {}) {
    const query = state.query;
    const request = (state.request += 1);
    const offset = append ? state.results.length : 0;
    state.loading = true;
    panel.setAttribute("aria-busy", "true");
    const result = await api(`/api/chat/search?q=${encodeURIComponent(query)}&limit=${PAGE}&offset=${offset}`);
    if (request !== state.request) return; // a newer query was typed meanwhile
    state.loading = false;
    panel.removeAttribute("aria-busy");
    if (!result.ok) {
      listEl.replaceChildren();
      more.hidden = true;
      status.textContent = result.status === 400 ? "Type a word to search for." : errorText(result, "Search failed.");
      return;
    }
    state.results = append ? [...state.results, ...result.body.results] : result.body.results;
    state.total = result.body.total;
    renderResults();
  }

  function changed() {
    clearTimeout(state.timer);
    const query = input.value.trim();
    if (!query) {
      state.query = "";
      state.request += 1;
      showList(false);
      return;
    }
    showList(true);
    if (query === state.query) return;
    state.query = query;
    status.textContent = "Searching…";
    state.timer = setTimeout(() => run(), DEBOUNCE_MS);
  }

  function clear() {
    input.value = "";
    changed();
  }

  input.addEventListener("input", changed);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && input.value) {
      event.preventDefault();
      event.stopPropagation();
      clear();
    } else if (event.key === "ArrowDown") {
      const first = listEl.querySelector("a");
      if (first) {
        event.preventDefault();
        first.focus();
      }
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(state.timer);
    if (input.value.trim()) {
      state.query = input.value.trim();
      showList(true);
      run();
    }
  });
  more.addEventListener("click", () => run({ append: true }));
  listEl.addEventListener("click", (event) => {
    const link = event.target.closest("a.search-link");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    hooks.openSession(link.dataset.sessionId);
    for (const other of listEl.querySelectorAll("a[aria-current]")) other.removeAttribute("aria-current");
    link.setAttribute("aria-current", "page");
    hooks.closeSidebar();
  });
  listEl.addEventListener("keydown", (event) => {
    const link = event.target.closest("a.search-link");
    if (!link) return;
    const items = [...listEl.querySelectorAll("a.search-link")];
    const index = items.indexOf(link);
    if (event.key === "ArrowDown" && index < items.length - 1) {
      event.preventDefault();
      items[index + 1].focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      (index > 0 ? items[index - 1] : input).focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      input.focus();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (!isShortcut(event)) return;
    event.preventDefault();
    hooks.openSidebar();
    input.focus();
    input.select();
  });

  return { input, clear };
}
