// The host console's group deal: create and start one for a product (group size, window, group
// price), stop it, and its live figures: groups forming (GET /api/sales/{id}/groups) and formed,
// items held by forming groups, sold, orders and revenue (GET /api/sales/{id}), re-read each
// second and when a group event comes.
import { api, element, money } from "./client.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const STATS = [
  ["state", "State"], ["stock", "Stock"], ["remaining", "Left"], ["forming", "Groups forming"],
  ["formed", "Groups formed"], ["held", "Held"], ["sold", "Sold"], ["orders", "Orders"], ["revenue", "Revenue"],
];

function field(label, name, value, attributes = {}) {
  return element("label", {}, `${label} `, element("input", { name, type: "number", value, required: "", ...attributes }));
}

function build() {
  const form = element("form", { "data-testid": "group-form", class: "stack" },
    element("select", { name: "product_id", "data-testid": "group-product", required: "" }),
    field("Stock", "stock", "10", { min: "1" }),
    field("Price", "price", "18.00", { min: "0", step: "0.01" }),
    field("Group price", "group_price", "12.00", { min: "0", step: "0.01" }),
    field("Limit per buyer", "limit", "1", { min: "1" }),
    field("Group size", "size", "2", { min: "2", max: "100" }),
    field("Window (s)", "window", "30", { min: "1" }),
    element("button", { text: "Create and start" }));
  const stats = element("dl", { class: "stats", "data-testid": "group-stats" },
    ...STATS.flatMap(([key, label]) => [element("dt", { text: label }), element("dd", { "data-group-stat": key, text: "–" })]));
  const stop = element("button", { class: "danger", "data-testid": "stop-group", disabled: "", text: "Stop group deal" });
  const section = element("section", { "data-testid": "group-console" }, element("h2", { text: "Group deal" }), form, stats, stop);
  return { section, form, stop };
}

export function mountGroupConsole(client, base, attempt) {
  const ui = build();
  $("auction-form").closest("section").after(ui.section);
  let current = null; // the deal's id

  async function refresh() {
    if (!current) return;
    const id = current;
    const [figures, open] = await Promise.all([
      api("GET", `/api/sales/${id}`, client.token).catch(() => null),
      api("GET", `/api/sales/${id}/groups`, client.token).catch(() => null),
    ]);
    if (!figures || current !== id) return;
    const show = {
      ...figures,
      forming: open ? String(open.groups.length) : "–",
      formed: String(figures.groups_formed),
      revenue: money(figures.revenue_cents),
    };
    for (const cell of ui.section.querySelectorAll("[data-group-stat]")) cell.textContent = String(show[cell.dataset.groupStat]);
    ui.stop.disabled = figures.state === "ended";
  }

  function follow(sale) {
    if (sale?.kind !== "group") return;
    current = sale.id;
    refresh();
  }

  ui.form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const form = new FormData(submit.target);
    const cents = (name) => Math.round(Number(form.get(name)) * 100);
    const body = {
      kind: "group",
      product_id: Number(form.get("product_id")),
      stock: Number(form.get("stock")),
      price_cents: cents("price"),
      group_price_cents: cents("group_price"),
      limit_per_buyer: Number(form.get("limit")),
      group_size: Number(form.get("size")),
      group_window_s: Number(form.get("window")),
    };
    const deal = await attempt(() => api("POST", `${base}/sales`, client.token, body));
    if (!deal) return;
    current = deal.id;
    await attempt(() => api("POST", `/api/sales/${deal.id}/start`, client.token), `Group deal ${deal.id} started`);
    await refresh();
  });

  ui.stop.addEventListener("click", async () => {
    if (current) await attempt(() => api("POST", `/api/sales/${current}/stop`, client.token), "Group deal stopped");
    await refresh();
  });

  client.addEventListener("snapshot", ({ detail: snapshot }) => follow(snapshot.sale));
  client.addEventListener("event", ({ detail: event }) => {
    if (event.type.startsWith("sale_")) follow(event.data.sale);
    if (event.type.startsWith("group_") && event.data.sale_id === current) refresh();
  });
  setInterval(refresh, 1000);
}

/** The product choices of the group deal form (the console reloads its products). */
export function groupProducts(products) {
  $("group-product").replaceChildren(
    ...products.map((p) => element("option", { value: String(p.id), text: `${p.title} (${p.sku})` })),
  );
}
