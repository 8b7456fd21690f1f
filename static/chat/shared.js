// The public page of a share link (/share/<token>): renders the snapshot embedded in the
// page (a JSON data block, not a script) with the chat page's own code, so the same
// marked + DOMPurify sanitising applies. Read-only: no composer, no live turn.
import { rowsToBubbles } from "./model.js";
import { MessageList } from "./view.js";

const data = document.getElementById("shared-snapshot");
const container = document.getElementById("message-list");
if (data && container) {
  const rows = JSON.parse(data.textContent);
  const bubbles = rowsToBubbles(rows);
  for (const bubble of bubbles) {
    const first = rows.find((row) => row.sequence === bubble.sequence);
    bubble.createdAt = first ? first.created_at : null;
  }
  new MessageList(container).render(bubbles);
  container.dataset.ready = "true";
}
