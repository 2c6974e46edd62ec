// The overlay's waitlist of a sold-out flash sale (README, "Waitlist"): join or leave it over
// HTTP, and take the offer of a freed unit when it comes as the direct message `offer`: confirm
// it (the WebSocket `confirm`, as a hold) or decline it (`cancel`) before its timer runs out.
// A direct message is not replayed on resume: on every welcome the place in line is read again.
import { api, countdown, money } from "./client.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

/** Mounts the panel; `current()` gives {sale, remaining} as the overlay shows them. Returns
 * the render function, for the overlay to call when the sale or its stock changes. */
export function mountWaitlist(client, current) {
  const view = { saleId: null, position: null, offer: null };
  const message = (text, error = "") => {
    $("waitlist-message").textContent = text;
    $("waitlist-message").dataset.error = error;
  };
  const path = () => `/api/sales/${view.saleId}/waitlist`;

  function render() {
    const { sale, remaining } = current();
    if (!sale || sale.id !== view.saleId) {
      Object.assign(view, { saleId: sale ? sale.id : null, position: null, offer: null });
      message("");
      if (sale) readPosition();
    }
    const live = sale && sale.kind !== "group" && (sale.state === "open" || sale.state === "sold_out");
    const waiting = view.position !== null;
    $("waitlist").hidden = !live || !client.token || (remaining > 0 && !waiting && !view.offer);
    $("join-waitlist").hidden = waiting || Boolean(view.offer);
    $("leave-waitlist").hidden = !waiting;
    $("waitlist-offer").hidden = !view.offer;
    if (view.offer) $("waitlist-offer-price").textContent = money(view.offer.price_cents * view.offer.qty);
    tick();
  }

  function tick() {
    if (!view.offer) return;
    const left = view.offer.expires_at - client.now();
    $("waitlist-offer-timer").textContent = countdown(left);
    if (left <= 0) {
      view.offer = null;
      message("Your offer lapsed: it went to the next in line.");
      render();
    }
  }

  async function readPosition() {
    if (!client.token || view.saleId === null) return;
    const saleId = view.saleId;
    try {
      const mine = await api("GET", path(), client.token);
      if (saleId === view.saleId) view.position = mine.position;
    } catch {
      return; // the panel stays as it was; the next welcome reads again
    }
    if (view.position !== null) message(`You are #${view.position} on the waitlist.`);
    render();
  }

  $("join-waitlist").addEventListener("click", async () => {
    try {
      view.position = (await api("POST", path(), client.token)).position;
      message(`You are #${view.position} on the waitlist.`);
    } catch (error) {
      if (error.error === "already_waiting") readPosition();
      message(error.message, error.error);
    }
    render();
  });

  $("leave-waitlist").addEventListener("click", async () => {
    try {
      await api("DELETE", path(), client.token);
      message("You left the waitlist.");
    } catch (error) {
      message(error.message, error.error);
    }
    view.position = null;
    render();
  });

  $("confirm-waitlist-offer").addEventListener("click", async () => {
    try {
      const order = await client.send("confirm", { reservation_id: view.offer.reservation_id, payment_ref: `demo-${Date.now()}` });
      message(`Order #${order.id} confirmed — ${money(order.total_cents)}`);
      $("waitlist-message").dataset.order = String(order.id);
    } catch (error) {
      message(error.message, error.error);
    }
    view.offer = null;
    render();
  });

  $("decline-waitlist-offer").addEventListener("click", async () => {
    try {
      await client.send("cancel", { reservation_id: view.offer.reservation_id });
      message("Declined: it goes to the next in line.");
    } catch (error) {
      message(error.message, error.error);
    }
    view.offer = null;
    render();
  });

  client.addEventListener("direct", ({ detail: { kind, data } }) => {
    if (kind !== "offer" || data.sale_id !== view.saleId) return;
    view.offer = data;
    view.position = null;
    message("A unit came free and it is yours: confirm it before the timer runs out.");
    render();
  });
  client.addEventListener("welcome", () => readPosition());
  setInterval(tick, 250);
  return render;
}
