// The viewer overlay: the room snapshot, then events in order; buy, confirm and comment over the
// WebSocket (the auction's part is auction.js). Uses only the documented protocol
// (docs/protocol.md). The token comes from the URL fragment (#token=...) and is refreshed before it runs out through pageTokenSource: an
// embedding site defines window.liveGetToken() or hands over new tokens (docs/protocol.md,
// "Token refresh").
import { mountAuction } from "./auction.js";
import { mountGroupDeal } from "./group.js";
import { LiveClient, countdown, element, money, pageToken, pageTokenSource, roomFromPath } from "./client.js";
import { mountShare, shareConnectParams } from "./share.js";
import { mountWaitlist } from "./waitlist.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const room = roomFromPath();
const client = new LiveClient(room, pageToken(room), {
  getToken: pageTokenSource(room),
  connectParams: shareConnectParams(), // a share link's code: its sharer is credited
});
const view = { sale: null, stock: null, hold: null, order: null, ended: false };

function placeholderImage(title) {
  const letter = encodeURIComponent((title || "?").slice(0, 1).toUpperCase());
  return `data:image/svg+xml,<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96"><rect width="96" height="96" fill="%23334"/><text x="48" y="62" font-size="44" text-anchor="middle" fill="%23fff">${letter}</text></svg>`;
}

function showPinned(product) {
  $("pinned").hidden = !product;
  if (!product) return;
  $("product-title").textContent = product.title;
  $("price").textContent = money(product.price_cents);
  const image = $("pinned").querySelector("img");
  image.src = product.image_url || placeholderImage(product.title);
  image.alt = product.title;
}

function remaining() {
  if (view.stock && view.sale && view.stock.sale_id === view.sale.id) return view.stock.remaining;
  return view.sale ? view.sale.remaining : 0;
}

function renderSale() {
  const sale = view.sale;
  $("sale").hidden = !sale || sale.kind === "group"; // a group deal: group.js
  if (!sale) return;
  $("sale-title").textContent = sale.product ? sale.product.title : "";
  $("sale-price").textContent = money(sale.price_cents);
  const left = remaining();
  const state = sale.state === "open" && left === 0 ? "sold_out" : sale.state;
  $("stock").textContent = state === "ended" ? "Sale ended" : left === 0 ? "Sold out" : `${left} left`;
  $("sale").dataset.state = state;
  const buy = $("buy");
  buy.disabled = state !== "open" || !client.token || Boolean(view.hold) || Boolean(view.order);
  buy.textContent = !client.token ? "Sign in to buy" : state === "sold_out" ? "Sold out" : "Buy";
  $("hold").hidden = !view.hold;
  renderWaitlist();
  tick();
}

function tick() {
  const sale = view.sale;
  if (sale) {
    let text = "";
    if (sale.state === "scheduled" && sale.starts_at) text = `starts in ${countdown(sale.starts_at - client.now())}`;
    else if (sale.state !== "ended" && sale.ends_at) text = `ends in ${countdown(sale.ends_at - client.now())}`;
    $("countdown").textContent = text;
  }
  if (view.hold) {
    const left = view.hold.expires_at - client.now();
    $("hold-timer").textContent = countdown(left);
    if (left <= 0) {
      view.hold = null;
      $("sale-message").textContent = "Your hold expired.";
      renderSale();
    }
  }
}

function toast(text) {
  const node = element("div", { class: "toast", text });
  $("toasts").append(node);
  setTimeout(() => node.remove(), 3000);
}

function addComment(comment) {
  const list = $("comments");
  list.append(
    element("li", { "data-comment": comment.id }, element("b", { text: comment.name }), ` ${comment.text}`),
  );
  while (list.children.length > 100) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
}

function hostMessage(message) {
  $("host-message").hidden = !message;
  if (message) $("host-message").textContent = `${message.by}: ${message.text}`;
}

client.addEventListener("status", ({ detail }) => {
  $("status").textContent = detail.detail ? `${detail.state} · ${detail.detail}` : detail.state;
  $("status").dataset.state = detail.state;
});

client.addEventListener("snapshot", ({ detail: snapshot }) => {
  $("room-title").textContent = snapshot.room.title;
  $("viewers").textContent = `${snapshot.viewers} watching`;
  showPinned(snapshot.pinned);
  hostMessage(snapshot.host_message);
  view.sale = snapshot.sale;
  view.stock = snapshot.stock || null;
  view.ended = snapshot.room.ended;
  $("ended").hidden = !view.ended;
  $("comments").replaceChildren();
  for (const comment of snapshot.comments) addComment(comment.data);
  renderSale();
});

client.addEventListener("event", ({ detail: event }) => {
  const data = event.data;
  switch (event.type) {
    case "pinned": showPinned(data.product); break;
    case "unpinned": showPinned(null); break;
    case "host_message": hostMessage(data); break;
    case "comment": addComment(data); break;
    case "comment_deleted": document.querySelector(`[data-comment="${data.id}"]`)?.remove(); break;
    case "viewers": $("viewers").textContent = `${data.count} watching`; break;
    case "room_ended": view.ended = true; $("ended").hidden = false; break;
    case "sale_scheduled": case "sale_started": case "sale_ended": case "sold_out":
      if (view.sale && view.sale.id !== data.sale.id) { view.hold = null; view.order = null; }
      view.sale = data.sale;
      if (data.sale.state === "ended") view.hold = null;
      renderSale();
      break;
    case "stock": view.stock = data; renderSale(); break;
    case "purchase": toast(data.name ? `${data.name} just bought!` : "Someone just bought!"); break;
  }
});

$("buy").addEventListener("click", async () => {
  $("buy").disabled = true;
  $("sale-message").textContent = "";
  const key = globalThis.crypto?.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  try {
    view.hold = await client.send("buy", { sale_id: view.sale.id, qty: 1, idempotency_key: key });
    view.stock = { sale_id: view.sale.id, remaining: view.hold.remaining };
    $("sale-message").textContent = "Reserved! Confirm before the timer runs out.";
  } catch (error) {
    $("sale-message").textContent = error.error === "sold_out" ? "Sold out — so close!" : error.message;
    if (error.error === "sold_out") view.stock = { sale_id: view.sale.id, remaining: 0 };
  }
  renderSale();
});

$("confirm").addEventListener("click", async () => {
  try {
    const order = await client.send("confirm", { reservation_id: view.hold.id, payment_ref: `demo-${Date.now()}` });
    view.hold = null;
    view.order = order;
    $("sale-message").textContent = `Order #${order.id} confirmed — ${money(order.total_cents)}`;
    $("sale-message").dataset.order = String(order.id);
  } catch (error) {
    $("sale-message").textContent = error.message;
    if (error.error === "expired") view.hold = null;
  }
  renderSale();
});

$("cancel").addEventListener("click", async () => {
  try {
    await client.send("cancel", { reservation_id: view.hold.id });
    $("sale-message").textContent = "Given back.";
  } catch (error) {
    $("sale-message").textContent = error.message;
  }
  view.hold = null;
  renderSale();
});

$("comment-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const input = $("comment-input");
  const text = input.value.trim();
  if (!text) return;
  if (!client.token) {
    $("comment-message").textContent = "Sign in to comment.";
    return;
  }
  try {
    await client.send("comment", { text });
    input.value = "";
    $("comment-message").textContent = "";
  } catch (error) {
    $("comment-message").textContent = error.message;
    $("comment-message").dataset.error = error.error;
  }
});

setInterval(tick, 250);
mountAuction(client);
mountGroupDeal(client, $("auction"));
mountShare(client, room);
const renderWaitlist = mountWaitlist(client, () => ({ sale: view.sale, remaining: remaining() }));
client.connect();
