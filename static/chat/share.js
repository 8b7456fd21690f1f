import { api, errorText } from "../site/http.js";

// The chat toolbar's download and share tools. (The import stays above this comment: the
// static files' hashing rewrites a line that reads like an ES export followed by `from`.)
//
// Export: a menu of two download links (GET …/export?format=md|json); the server names the file.
// Share: a dialog that creates a read-only public link to a snapshot of the chat
// (POST …/shares, optionally without tool calls and outputs), shows it with a Copy
// button, and lists this chat's links with Revoke (DELETE /api/chat/shares/{id}).
// The link's token is shown once, when it is made: the server keeps only its hash.

function button(text, className, attrs = {}) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.textContent = text;
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

export function initTranscriptTools(root) {
  const toolbar = root.querySelector(".chat-toolbar");
  const tools = document.createElement("div");
  tools.className = "transcript-tools";
  tools.hidden = true;

  const exportMenu = document.createElement("details");
  exportMenu.className = "export-menu";
  exportMenu.innerHTML = `<summary class="button-link secondary" data-testid="export-toggle">Export</summary>
    <div class="menu" role="group" aria-label="Export this chat">
      <a data-format="md" download data-testid="export-md">Markdown (.md)</a>
      <a data-format="json" download data-testid="export-json">JSON (.json)</a>
    </div>`;
  const links = [...exportMenu.querySelectorAll("a[data-format]")];
  for (const link of links) link.addEventListener("click", () => (exportMenu.open = false));
  document.addEventListener("click", (event) => {
    if (exportMenu.open && !exportMenu.contains(event.target)) exportMenu.open = false;
  });
  exportMenu.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && exportMenu.open) {
      event.stopPropagation();
      exportMenu.open = false;
      exportMenu.querySelector("summary").focus();
    }
  });

  const shareButton = button("Share", "secondary", { "aria-haspopup": "dialog", "data-testid": "share-open" });
  tools.append(exportMenu, shareButton);
  toolbar.append(tools);

  const dialog = buildShareDialog();
  root.append(dialog.element);
  shareButton.addEventListener("click", () => dialog.open(sessionId));

  let sessionId = null;
  function sessionChanged(id) {
    sessionId = id || null;
    tools.hidden = !sessionId;
    exportMenu.open = false;
    for (const link of links) {
      if (sessionId) link.href = `/api/chat/sessions/${encodeURIComponent(sessionId)}/export?format=${link.dataset.format}`;
      else link.removeAttribute("href");
    }
  }

  return { sessionChanged };
}

function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function buildShareDialog() {
  const element = document.createElement("dialog");
  element.className = "share-dialog";
  element.setAttribute("aria-labelledby", "share-dialog-title");
  element.dataset.testid = "share-dialog";
  element.innerHTML = `
    <h2 id="share-dialog-title">Share this chat</h2>
    <p class="muted small">Anyone with the link can read a snapshot of the chat as it is now. Messages you send later are not shared. Search engines are asked not to index it.</p>
    <label class="share-option"><input type="checkbox" data-testid="share-hide-tools"> Hide tool calls and their outputs</label>
    <div class="row"><button type="button" data-create data-testid="share-create">Create link</button></div>
    <div class="share-created" hidden data-testid="share-created">
      <label for="share-url" class="small">Your link (shown only now; copy it)</label>
      <div class="share-url-row">
        <input id="share-url" type="text" readonly data-testid="share-url">
        <button type="button" class="secondary" data-copy data-testid="share-copy">Copy link</button>
      </div>
    </div>
    <p class="share-status small" role="status" aria-live="polite" data-testid="share-status"></p>
    <h3 class="share-list-title">Links to this chat</h3>
    <ul class="share-list" data-testid="share-list"></ul>
    <p class="muted small share-empty" data-testid="share-empty">No links yet.</p>
    <div class="row share-actions"><button type="button" class="secondary" data-close>Close</button></div>`;
  const q = (selector) => element.querySelector(selector);
  const hide = q("[data-testid=share-hide-tools]");
  const create = q("[data-create]");
  const created = q(".share-created");
  const url = q("#share-url");
  const copy = q("[data-copy]");
  const statusEl = q(".share-status");
  const listEl = q(".share-list");
  const empty = q(".share-empty");
  let sessionId = null;

  function say(text, tone = "info") {
    statusEl.textContent = text;
    statusEl.dataset.tone = tone;
  }

  function shareItem(share) {
    const li = document.createElement("li");
    li.className = "share-item";
    li.dataset.shareId = share.id;
    li.dataset.testid = "share-item";
    const text = document.createElement("span");
    text.className = "small";
    text.textContent = `${formatDate(share.created_at)}${share.hide_tool_internals ? " · tools hidden" : ""}`;
    const revoke = button("Revoke", "link", { "data-testid": "share-revoke", "aria-label": `Revoke the link made ${formatDate(share.created_at)}` });
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      const result = await api(`/api/chat/shares/${encodeURIComponent(share.id)}`, { method: "DELETE" });
      if (!result.ok && result.status !== 404) {
        revoke.disabled = false;
        say(errorText(result, "Could not revoke the link."), "error");
        return;
      }
      if (created.dataset.shareId === share.id) {
        created.hidden = true;
        url.value = "";
      }
      say("Link revoked: it no longer opens.");
      await refresh();
    });
    li.append(text, revoke);
    return li;
  }

  async function refresh() {
    const id = sessionId;
    const result = await api(`/api/chat/shares?session_id=${encodeURIComponent(id)}&limit=100`);
    if (id !== sessionId) return;
    if (!result.ok) {
      say(errorText(result, "Could not load this chat's links."), "error");
      return;
    }
    listEl.replaceChildren(...result.body.shares.map(shareItem));
    empty.hidden = result.body.shares.length > 0;
  }

  create.addEventListener("click", async () => {
    create.disabled = true;
    say("Creating the link…");
    const result = await api(`/api/chat/sessions/${encodeURIComponent(sessionId)}/shares`, {
      method: "POST",
      json: { hide_tool_internals: hide.checked },
    });
    create.disabled = false;
    if (!result.ok) {
      say(errorText(result, "Could not create the link."), "error");
      return;
    }
    url.value = result.body.url;
    created.dataset.shareId = result.body.id;
    created.hidden = false;
    say("Link created.");
    url.focus();
    url.select();
    await refresh();
  });

  copy.addEventListener("click", async () => {
    let ok = false;
    try {
      await navigator.clipboard.writeText(url.value);
      ok = true;
    } catch {
      url.select();
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
    }
    copy.textContent = ok ? "Copied" : "Copy failed";
    say(ok ? "Link copied to the clipboard." : "Copy failed: select the link and copy it.", ok ? "info" : "error");
    setTimeout(() => {
      copy.textContent = "Copy link";
    }, 1500);
  });

  q("[data-close]").addEventListener("click", () => element.close());
  element.addEventListener("click", (event) => {
    if (event.target === element) element.close(); // a click on the backdrop
  });

  return {
    element,
    open(id) {
      if (!id) return;
      sessionId = id;
      created.hidden = true;
      url.value = "";
      hide.checked = false;
      say("");
      listEl.replaceChildren();
      empty.hidden = true;
      element.showModal();
      refresh();
    },
  };
}
