// The host console: the room's products, pins, flash sales, auctions (auction_host.js) and
// moderation through the HTTP API; live state (viewers, stock, comments, bids) through the same
// WebSocket protocol viewers use. The token is refreshed as in the viewer overlay
// (docs/protocol.md, "Token refresh"); HTTP calls use the current one.
import { auctionProducts, mountAuctionConsole } from "./auction_host.js";
import { groupProducts, mountGroupConsole } from "./group_host.js";
import { mountReferrals } from "./referrals_host.js";
import { LiveClient, api, element, money, pageToken, pageTokenSource, roomFromPath } from "./client.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const room = roomFromPath();
const client = new LiveClient(room, pageToken(room), { getToken: pageTokenSource(room) });
const base = `/api/rooms/${encodeURIComponent(room)}`;
let currentSale = null;

function notice(text, isError = false) {
  $("notice").textContent = text;
  $("notice").classList.toggle("error", isError);
}

async function attempt(work, done) {
  try {
    const result = await work();
    if (done) notice(done);
    return result;
  } catch (error) {
    notice(`${error.error || "error"}: ${error.message}`, true);
    return null;
  }
}

async function loadProducts() {
  const data = await attempt(() => api("GET", `${base}/products`, client.token));
  if (!data) return;
  const rows = data.products.map((product) =>
    element(
      "tr",
      { "data-product": String(product.id) },
      element("td", { text: product.sku }),
      element("td", { text: product.title }),
      element("td", { text: money(product.price_cents) }),
      element(
        "td",
        {},
        element("button", {
          text: "Pin",
          "data-testid": `pin-${product.sku}`,
          onclick: () => attempt(() => api("POST", `${base}/pin`, client.token, { product_id: product.id }), `Pinned ${product.title}`),
        }),
      ),
    ),
  );
  $("products").querySelector("tbody").replaceChildren(...rows);
  $("sale-product").replaceChildren(
    ...data.products.map((p) => element("option", { value: String(p.id), text: `${p.title} (${p.sku})` })),
  );
  auctionProducts(data.products);
  groupProducts(data.products);
}

async function refreshStats() {
  if (!currentSale) return;
  const figures = await api("GET", `/api/sales/${currentSale}`, client.token).catch(() => null);
  if (!figures) return;
  const show = { ...figures, revenue: money(figures.revenue_cents) };
  for (const cell of document.querySelectorAll("[data-stat]")) cell.textContent = String(show[cell.dataset.stat]);
  $("stop-sale").disabled = figures.state === "ended";
}

function addComment(comment) {
  const item = element(
    "li",
    { "data-comment": comment.id },
    element("b", { text: comment.name }),
    ` ${comment.text} `,
    element("button", {
      class: "secondary",
      text: "Delete",
      onclick: () => attempt(() => api("DELETE", `${base}/comments/${comment.id}`, client.token), "Comment deleted"),
    }),
    element("button", {
      class: "secondary",
      text: "Mute",
      "data-testid": `mute-${comment.user}`,
      onclick: () =>
        attempt(() => api("PUT", `${base}/mutes/${encodeURIComponent(comment.user)}`, client.token, { seconds: 600 }), `Muted ${comment.name} for 10 minutes`),
    }),
  );
  $("comments").append(item);
  while ($("comments").children.length > 200) $("comments").firstChild.remove();
}

$("room-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const title = new FormData(submit.target).get("title");
  const saved = await attempt(() => api("PUT", base, client.token, { title }), "Room saved");
  if (saved) $("room-title").textContent = saved.title;
});

$("product-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const form = new FormData(submit.target);
  const body = {
    sku: form.get("sku"),
    title: form.get("title"),
    price_cents: Math.round(Number(form.get("price")) * 100),
    image_url: form.get("image_url") || "",
  };
  if (await attempt(() => api("POST", `${base}/products`, client.token, body), `Added ${body.title}`)) {
    submit.target.reset();
    await loadProducts();
  }
});

$("unpin").addEventListener("click", () => attempt(() => api("DELETE", `${base}/pin`, client.token), "Unpinned"));

$("message-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const text = new FormData(submit.target).get("text");
  if (await attempt(() => api("POST", `${base}/messages`, client.token, { text }), "Message sent")) submit.target.reset();
});

$("sale-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const form = new FormData(submit.target);
  const startsAt = form.get("starts_at");
  const body = {
    product_id: Number(form.get("product_id")),
    stock: Number(form.get("stock")),
    price_cents: Math.round(Number(form.get("price")) * 100),
    limit_per_buyer: Number(form.get("limit")),
    hold_seconds: Number(form.get("hold")),
  };
  if (startsAt) body.starts_at = new Date(startsAt).getTime();
  const sale = await attempt(() => api("POST", `${base}/sales`, client.token, body));
  if (!sale) return;
  currentSale = sale.id;
  if (!startsAt) await attempt(() => api("POST", `/api/sales/${sale.id}/start`, client.token), `Sale ${sale.id} started`);
  else notice(`Sale ${sale.id} scheduled`);
  await refreshStats();
});

$("stop-sale").addEventListener("click", async () => {
  if (currentSale) await attempt(() => api("POST", `/api/sales/${currentSale}/stop`, client.token), "Sale stopped");
  await refreshStats();
});

$("slow-mode").addEventListener("change", (change) =>
  attempt(() => api("PUT", `${base}/slow-mode`, client.token, { seconds: Number(change.target.value) }), "Slow mode updated"),
);

client.addEventListener("status", ({ detail }) => {
  $("status").textContent = detail.state;
  $("status").dataset.state = detail.state;
});
client.addEventListener("snapshot", ({ detail: snapshot }) => {
  $("room-title").textContent = snapshot.room.title;
  document.querySelector('[data-testid="room-form"] input').value = snapshot.room.title;
  $("viewers").textContent = `${snapshot.viewers} watching`;
  $("slow-mode").value = String(snapshot.slow_mode);
  if (snapshot.sale) currentSale = snapshot.sale.id;
  $("comments").replaceChildren();
  for (const comment of snapshot.comments) addComment(comment.data);
  refreshStats();
});
client.addEventListener("event", ({ detail: event }) => {
  const data = event.data;
  if (event.type === "viewers") $("viewers").textContent = `${data.count} watching`;
  if (event.type === "comment") addComment(data);
  if (event.type === "comment_deleted") document.querySelector(`[data-comment="${data.id}"]`)?.remove();
  if (event.type.startsWith("sale_") || event.type === "sold_out") currentSale = data.sale.id;
  if (event.type === "stock" || event.type.startsWith("sale_") || event.type === "sold_out") refreshStats();
});

async function start() {
  const exists = await api("GET", base, client.token).catch(() => null);
  if (exists) {
    client.connect();
    await loadProducts();
  } else {
    notice("This room does not exist yet: give it a title and save it.");
    $("room-form").addEventListener("submit", () => setTimeout(() => { client.connect(); loadProducts(); }, 300), { once: true });
  }
}
setInterval(refreshStats, 1000);
mountAuctionConsole(client, base, attempt);
mountReferrals(client, base, attempt);
mountGroupConsole(client, base, attempt);
start();
