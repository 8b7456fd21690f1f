// Tools that ask first: the Approve / Deny box of a tool call that waits for the user.
//
// The turn streams the AI SDK's `tool-approval-request` chunk (model.js turns the tool
// part's state into "approval" and keeps its `approvalId`); the view puts `approvalBox(part)`
// under that tool row. A click POSTs the decision to
// /api/chat/sessions/{id}/approvals/{approvalId} {approved, reason?}; the running turn picks
// it up on the server and streams the tool's output, or `tool-output-denied` (state
// "denied"). The decision may come from another tab or device: the box then goes away
// with the next chunk. A 409 (already decided, timed out, stopped) is shown in the box.
import { api, errorText } from "../site/http.js";
import { prettyValue } from "./model.js";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// The box shown under a waiting tool call (its buttons are handled by installApprovals).
export function approvalBox(part) {
  const reasonId = `approval-reason-${part.approvalId}`;
  return el(
    "div",
    { class: "approval", role: "group", "aria-label": `Approve ${part.name}?`, "data-testid": "approval", "data-approval-id": part.approvalId },
    el("p", { class: "approval-question", text: `The copilot wants to run ${part.name}. Allow it?` }),
    el("pre", { class: "approval-input", "data-testid": "approval-input", text: prettyValue(part.input ?? {}) }),
    el("label", { class: "small muted", for: reasonId, text: "Reason (optional, sent to the copilot on a denial)" }),
    el("input", { id: reasonId, type: "text", maxlength: "1000", "data-approval-reason": "1", "data-testid": "approval-reason" }),
    el(
      "div",
      { class: "row approval-actions" },
      el("button", { type: "button", "data-approval-decision": "approve", "data-testid": "approve", text: "Approve" }),
      el("button", { type: "button", class: "danger", "data-approval-decision": "deny", "data-testid": "deny", text: "Deny" }),
    ),
    el("p", { class: "approval-status small", role: "status", "aria-live": "polite", "data-testid": "approval-status" }),
  );
}

// One click handler for the whole message list; `sessionId()` answers the open chat's id.
export function installApprovals(container, sessionId) {
  container.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-approval-decision]");
    if (!button || !container.contains(button)) return;
    const box = button.closest("[data-approval-id]");
    const id = sessionId();
    if (!box || !id) return;
    const approved = button.dataset.approvalDecision === "approve";
    const reasonInput = box.querySelector("[data-approval-reason]");
    const reason = reasonInput ? reasonInput.value.trim() : "";
    const status = box.querySelector(".approval-status");
    for (const b of box.querySelectorAll("button")) b.disabled = true;
    if (status) status.textContent = approved ? "Approving…" : "Denying…";
    const body = approved || !reason ? { approved } : { approved, reason };
    const result = await api(`/api/chat/sessions/${id}/approvals/${box.dataset.approvalId}`, { method: "POST", json: body });
    if (result.ok) {
      if (status) status.textContent = approved ? "Approved. Running…" : "Denied.";
      return;
    }
    if (status) status.textContent = errorText(result, "The decision was not saved.");
    if (result.status !== 409 && result.status !== 404) for (const b of box.querySelectorAll("button")) b.disabled = false;
  });
}
