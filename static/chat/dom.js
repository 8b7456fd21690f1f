// The one DOM builder of the chat page's modules: el("div", {class, text, onclick, ...attrs}, ...children).
// `class` and `text` set className and textContent; `on<event>` adds a listener; other keys are
// attributes (true → present and empty; false, null and undefined → left out). Null, undefined
// and false children are skipped, so `cond && el(...)` reads naturally.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}
