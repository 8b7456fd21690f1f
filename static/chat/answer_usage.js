// Under each finished answer: what it cost the user's limits, as the usage meter counts
// them ("used 3 % of today · 1 % of this week"), never dollars. The figures come from the
// session API (`usage` on the answer's rows: {charged, outcome, daily_percent, weekly_percent}).

function percent(value) {
  if (value === 0) return "0 %";
  if (value < 0.1) return "<0.1 %";
  if (value < 10) return `${String(Math.round(value * 10) / 10)} %`;
  return `${Math.round(value)} %`;
}

function utcDay(date) {
  return Math.floor(date.getTime() / 86_400_000);
}

// Day number of the Monday (UTC) that starts the date's ISO week.
function utcWeek(date) {
  const day = utcDay(date);
  return day - ((new Date(day * 86_400_000).getUTCDay() + 6) % 7);
}

// The sentence for an answer written at `createdAt` (ISO text), or "" without figures.
export function usageText(usage, createdAt, now = new Date()) {
  if (!usage) return "";
  if (!usage.charged) {
    if (usage.outcome === "failed") return "Not charged: the reply failed";
    if (usage.outcome === "cancelled") return "Not charged: stopped before any output";
    return "Not counted against your limits";
  }
  const at = createdAt ? new Date(createdAt) : now;
  const today = utcDay(at) === utcDay(now);
  const thisWeek = utcWeek(at) === utcWeek(now);
  const parts = [];
  if (usage.daily_percent !== null) parts.push(`${percent(usage.daily_percent)} of ${today ? "today" : "that day"}`);
  if (usage.weekly_percent !== null) parts.push(`${percent(usage.weekly_percent)} of ${thisWeek ? "this week" : "that week"}`);
  return parts.length ? `used ${parts.join(" · ")}` : "Your plan has no usage limits";
}

export function usageLine(bubble) {
  if (bubble.role !== "assistant" || bubble.live || !bubble.usage) return null;
  const line = document.createElement("p");
  line.className = "answer-usage small muted";
  line.dataset.testid = "answer-usage";
  line.textContent = usageText(bubble.usage, bubble.createdAt);
  return line;
}
