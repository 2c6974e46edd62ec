// The host console's share links: the room's referral report (per sharer: visits, orders,
// revenue and the reward the room's rule would pay; nothing is paid here) and the rule itself,
// a percent of the attributed revenue (README, "Share links").
import { api, element, money } from "./client.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const REFRESH_MS = 10_000;

export function mountReferrals(client, base, attempt) {
  /** Read the report; `quiet` (the periodic reads): a failure leaves the console's notice. */
  async function load(quiet = false) {
    const read = () => api("GET", `${base}/referrals`, client.token);
    const report = quiet ? await read().catch(() => null) : await attempt(read);
    if (!report) return;
    const percent = $("referral-rule-form").querySelector("input[name=percent]");
    if (report.rule && document.activeElement !== percent) percent.value = String(report.rule.percent);
    $("referral-rule").textContent = report.rule ? `${report.rule.percent}% of attributed revenue` : "no reward rule";
    const rows = report.sharers.map((sharer) =>
      element(
        "tr",
        { "data-sharer": sharer.sharer },
        element("td", { text: sharer.sharer }),
        element("td", { "data-referral": "visits", text: String(sharer.visits) }),
        element("td", { "data-referral": "orders", text: String(sharer.orders) }),
        element("td", { "data-referral": "revenue", text: money(sharer.revenue_cents) }),
        element("td", { "data-referral": "reward", text: money(sharer.reward_cents) }),
      ),
    );
    $("referrals").querySelector("tbody").replaceChildren(...rows);
  }

  $("referral-rule-form").addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const percent = Number(new FormData(submit.target).get("percent"));
    const saved = await attempt(
      () => api("PUT", `${base}/referrals/rule`, client.token, { percent }),
      `Reward rule saved: ${percent}%`,
    );
    if (saved) await load();
  });
  $("refresh-referrals").addEventListener("click", () => load());
  load(true);
  setInterval(() => load(true), REFRESH_MS);
}
