// Export and share, in the chat toolbar.
//
// Export: a menu of two download links (GET …/export?format=md|json); the server names the file.
// Share: a dialog that creates a read-only public link to a snapshot of the chat
// (POST …/shares, optionally without tool calls and outputs), shows it with a Copy
// button, and lists this chat's links with Revoke (DELETE /api/chat/shares/{id}).
// The link's token is shown once, when it is made: the server keeps only its hash.
import { api, errorText } from "../site/http.js";

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

  tools.append(exportMenu);
  toolbar.append(tools);

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

  return { sessionChanged, current: () => sessionId, tools, api, errorText, button };
}
