// The usage indicator in the page header: daily and weekly bars with
// "N% used" and the reset time, refreshed every 30 s and whenever a page asks
// (the chat page does after every turn). Users only ever see percentages.
import { api, errorText, formatCents, formatTime, percentLabel, timeUntil } from "./http.js";

const REFRESH_MS = 30_000;
const WARN_AT = 80;
const root = document.querySelector("[data-usage]");
let current = null;
let inFlight = null;

export function refreshUsage() {
  if (!root) return Promise.resolve(null);
  if (inFlight) return inFlight;
  inFlight = api(root.dataset.usageUrl)
    .then((result) => {
      if (result.ok && result.body) applyUsage(result.body);
      return current;
    })
    .finally(() => {
      inFlight = null;
    });
  return inFlight;
}

// POST /usage/reset; resolves to {ok, message}. On success the bars update at once.
export async function resetDaily() {
  const result = await api(root ? root.dataset.resetUrl : "/api/chat/usage/reset", { method: "POST" });
  if (!result.ok) return { ok: false, status: result.status, message: errorText(result) };
  if (result.body && result.body.usage) applyUsage(result.body.usage);
  const charged = result.body ? result.body.credits_charged : 0;
  return { ok: true, status: result.status, message: `Daily limit reset. ${formatCents(charged)} charged from your credits.` };
}

export function resetOffer(usage = current) {
  if (!usage || !usage.daily || usage.reset_cost <= 0) return null;
  if (usage.daily.percent_used < 100) return null;
  if (usage.weekly && usage.weekly.percent_used >= 100) return null; // a reset would not help
  return { cents: usage.reset_cost, label: `Reset daily limit for ${formatCents(usage.reset_cost)}` };
}

function level(percent) {
  if (percent === null || percent === undefined) return "none";
  if (percent >= 100) return "full";
  if (percent >= WARN_AT) return "warn";
  return "ok";
}

function paintBar(bar, percent) {
  const fill = bar.querySelector(".fill");
  const width = percent === null || percent === undefined ? 0 : Math.min(100, Math.max(0, percent));
  fill.style.width = `${width}%`;
  bar.dataset.level = level(percent);
  if (bar.getAttribute("role") === "progressbar") {
    bar.setAttribute("aria-valuenow", String(Math.round(width)));
    bar.setAttribute("aria-valuetext", percent === null || percent === undefined ? "No limit" : `${percentLabel(percent)} used`);
  }
}

function paint() {
  if (!root || !current) return;
  for (const name of ["daily", "weekly"]) {
    const window = current[name];
    const percent = window ? window.percent_used : null;
    const mini = root.querySelector(`[data-usage-mini="${name}"]`);
    paintBar(mini.querySelector(".bar"), percent);
    mini.dataset.level = level(percent);
    mini.querySelector("[data-value]").textContent = window ? percentLabel(percent) : "∞";
    const row = root.querySelector(`[data-usage-window="${name}"]`);
    row.dataset.level = level(percent);
    row.querySelector("[data-percent]").textContent = window ? `${percentLabel(percent)} used` : "No limit";
    paintBar(row.querySelector(".bar"), percent);
    row.querySelector("[data-resets]").textContent = window
      ? `Resets in ${timeUntil(window.resets_at)} (${formatTime(window.resets_at)})`
      : "";
  }
  const toggle = root.querySelector("[data-usage-toggle]");
  const describe = (name, label) => {
    const w = current[name];
    return w ? `${label} ${percentLabel(w.percent_used)} used, resets in ${timeUntil(w.resets_at)}` : `${label}: no limit`;
  };
  toggle.title = `${describe("daily", "Today")}. ${describe("weekly", "This week")}.`;
  const tier = root.querySelector("[data-usage-tier]");
  tier.textContent = current.tier ? current.tier.charAt(0) + current.tier.slice(1).toLowerCase() : "";
  const note = root.querySelector("[data-usage-note]");
  const notes = [];
  if (current.past_due) notes.push("Your last payment failed, so Free limits apply until it is settled.");
  if (current.personal_cap && current.personal_cap.reached) notes.push("You reached the daily cap you set on your account page.");
  const daily = current.daily;
  if (daily && daily.projected_exhaustion_at && daily.percent_used >= WARN_AT && daily.percent_used < 100) {
    notes.push(`At this pace you reach today's limit around ${formatTime(daily.projected_exhaustion_at)}.`);
  }
  note.textContent = notes.join(" ");
  const offer = resetOffer();
  const button = root.querySelector("[data-usage-reset]");
  button.hidden = !offer;
  if (offer) button.textContent = offer.label;
}

export function applyUsage(usage) {
  current = usage;
  paint();
}

function setOpen(open) {
  const toggle = root.querySelector("[data-usage-toggle]");
  const panel = root.querySelector(".usage-panel");
  toggle.setAttribute("aria-expanded", String(open));
  panel.hidden = !open;
  if (open) refreshUsage();
}

if (root) {
  const toggle = root.querySelector("[data-usage-toggle]");
  toggle.addEventListener("click", () => setOpen(toggle.getAttribute("aria-expanded") !== "true"));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
      setOpen(false);
      toggle.focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (toggle.getAttribute("aria-expanded") === "true" && !root.contains(event.target)) setOpen(false);
  });
  const resetButton = root.querySelector("[data-usage-reset]");
  const status = root.querySelector("[data-usage-status]");
  resetButton.addEventListener("click", async () => {
    resetButton.disabled = true;
    status.textContent = "Resetting…";
    const outcome = await resetDaily();
    status.textContent = outcome.message;
    resetButton.disabled = false;
  });
  window.addEventListener("copilot:usage-refresh", () => refreshUsage());
  refreshUsage();
  setInterval(() => {
    if (!document.hidden) refreshUsage();
  }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshUsage();
  });
  // "resets in …" ticks down between refreshes.
  setInterval(paint, 60_000);
}
