// The composer's model and mode picker. Each chat remembers its own choice (the server
// stores what a message asked for on the chat); a new chat starts from the user's
// defaults (account page), given on the page root as data-default-model / -mode.
const root = document.querySelector("[data-chat]");
const modelSelect = root ? root.querySelector("#model-picker") : null;
const modeSelect = root ? root.querySelector("#mode-picker") : null;
const advancedNote = root ? root.querySelector("#advanced-note") : null;

function paintNote() {
  if (advancedNote && modelSelect) advancedNote.hidden = modelSelect.value !== "advanced";
}

if (modelSelect) modelSelect.addEventListener("change", paintNote);

// What a send (or an edit, or a regenerate) asks for.
export function composerChoice() {
  if (!modelSelect || !modeSelect) return {};
  return { model: modelSelect.value, mode: modeSelect.value };
}

// Show a chat's remembered choice (`session` from the API; null for a new chat).
export function showChoice(session) {
  if (!modelSelect || !modeSelect) return;
  modelSelect.value = (session && session.model) || root.dataset.defaultModel || "standard";
  modeSelect.value = (session && session.mode) || root.dataset.defaultMode || "extended_thinking";
  paintNote();
}

export const MODEL_LABELS = { standard: "Standard model", advanced: "Advanced model" };
export const MODE_LABELS = { fast: "Fast", extended_thinking: "Thinking" };

// "Advanced model · Thinking": what an answer was written with (shown on hover).
export function choiceLabel(model, mode) {
  if (!model) return "";
  return [MODEL_LABELS[model] || model, MODE_LABELS[mode] || mode].filter(Boolean).join(" · ");
}
