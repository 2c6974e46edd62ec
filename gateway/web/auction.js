// The viewer overlay's auction: price, countdown by the server's clock, "you're winning" /
// "outbid", quick bids and a hidden maximum over the WebSocket `bid` command, the extension as it
// happens, and the winner's offer with its confirm. Direct messages (`outbid`, `auction_offer`)
// are not replayed on resume, so the offer is re-read over HTTP after every (re)connect
// (docs/protocol.md, "Direct messages").
import { api, countdown, element, money } from "./client.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

/** The step of the price band the price is in (`increments`: [[from_cents, step_cents], ...]). */
export function stepAt(auction, price) {
  let step = auction.increments[0][1];
  for (const [from, size] of auction.increments) if (price >= from) step = size;
  return step;
}

/** The price to show: the start price until the first bid. */
export function shownPrice(auction) {
  return auction.bids ? auction.price_cents : auction.start_cents;
}

/** The lowest bid the server takes now. */
export function minimumBid(auction) {
  if (auction.min_next_cents != null) return auction.min_next_cents;
  return auction.bids ? auction.price_cents + stepAt(auction, auction.price_cents) : auction.start_cents;
}

function newKey() {
  return globalThis.crypto?.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

export function mountAuction(client) {
  const view = { auction: null, product: null, leading: null, offer: null, order: null };

  function message(text) {
    $("auction-message").textContent = text;
  }

  function take(auction) {
    if (!auction) return;
    const same = view.auction && view.auction.id === auction.id;
    if (!same) {
      Object.assign(view, { leading: null, offer: null, order: null, product: null });
      message("");
    }
    view.auction = same ? { ...view.auction, ...auction } : { ...auction };
    if (auction.product) view.product = auction.product;
  }

  function render() {
    const auction = view.auction;
    $("auction").hidden = !auction;
    if (!auction) return;
    $("auction").dataset.state = auction.state;
    $("auction-title").textContent = view.product ? view.product.title : `Item ${auction.product_id}`;
    $("auction-price").textContent = money(shownPrice(auction));
    $("auction-bids").textContent = `${auction.bids} bid${auction.bids === 1 ? "" : "s"}`;
    $("auction-leader").textContent = auction.leader ? `leading: ${auction.leader}` : "";
    const standing = $("auction-standing");
    standing.textContent = view.leading === true ? "You're winning" : view.leading === false ? "Outbid" : "";
    standing.dataset.standing = view.leading === true ? "winning" : view.leading === false ? "outbid" : "";
    const open = auction.state === "open" && Boolean(client.token);
    const minimum = minimumBid(auction);
    const step = stepAt(auction, minimum);
    $("quick-bids").replaceChildren(
      ...[0, 1, 2].map((n) =>
        element("button", {
          "data-testid": `quick-bid-${n}`,
          "data-amount": String(minimum + n * step),
          text: `Bid ${money(minimum + n * step)}`,
          onclick: () => bid(minimum + n * step),
        }),
      ),
    );
    for (const button of $("quick-bids").children) button.disabled = !open;
    $("max-form").querySelector("button").disabled = !open;
    $("offer").hidden = !view.offer || Boolean(view.order);
    if (view.offer) {
      $("offer-price").textContent = money(view.offer.price_cents);
      $("offer-kind").textContent = view.offer.second_chance ? "Second chance: it's yours at your bid" : "You won!";
    }
    tick();
  }

  function tick() {
    const auction = view.auction;
    if (!auction) return;
    let text = auction.state === "ended" ? "Ended" : auction.state === "scheduled" ? "Starting soon" : "";
    if (auction.state === "open" && auction.ends_at) text = `ends in ${countdown(auction.ends_at - client.now())}`;
    $("auction-countdown").textContent = text;
    if (view.offer && !view.order) {
      const left = view.offer.expires_at - client.now();
      $("offer-timer").textContent = countdown(left);
      if (left <= 0) {
        view.offer = null;
        message("Your offer expired.");
        render();
      }
    }
  }

  async function bid(amount, max = null) {
    const auction = view.auction;
    message("");
    const fields = { auction_id: auction.id, amount_cents: amount, idempotency_key: newKey(), show_name: true };
    if (max != null) fields.max_cents = max;
    try {
      const answer = await client.send("bid", fields);
      view.leading = answer.leading;
      take({ id: auction.id, price_cents: answer.price_cents, ends_at: answer.ends_at, bids: answer.bids,
             extensions: answer.extensions, min_next_cents: answer.min_next_cents });
      message(answer.leading ? `Your bid of ${money(amount)} leads` : "Someone's maximum is higher");
    } catch (error) {
      message(error.error === "too_low" ? "Someone bid first: try the new price" : error.message);
    }
    render();
  }

  /** The caller's live offer of the room's ended auction, from PostgreSQL. */
  async function readOffer() {
    const auction = view.auction;
    if (!auction || auction.state !== "ended" || !client.token || view.order) return;
    const data = await api("GET", `/api/auctions/${auction.id}/offers`, client.token).catch(() => null);
    const offered = data?.offers.find((offer) => offer.state === "offered");
    if (offered && view.auction?.id === auction.id) {
      view.offer = offered;
      render();
    }
  }

  function extended(data) {
    if (view.auction?.id !== data.auction_id) return;
    take({ id: data.auction_id, ends_at: data.ends_at, extensions: data.extensions });
    const flash = $("auction-extended");
    flash.textContent = `Extended! (${data.extensions}/${view.auction.max_extensions})`;
    flash.hidden = false;
    setTimeout(() => { flash.hidden = true; }, 2500);
    render();
  }

  client.addEventListener("snapshot", ({ detail: snapshot }) => {
    if (snapshot.auction) take(snapshot.auction);
    render();
    readOffer();
  });
  client.addEventListener("welcome", ({ detail: welcome }) => {
    if (welcome.resumed) readOffer();
  });
  client.addEventListener("event", ({ detail: event }) => {
    const data = event.data;
    switch (event.type) {
      case "auction_started": take(data.auction); render(); break;
      case "auction": take(data); render(); break;
      case "auction_extended": extended(data); break;
      case "auction_ended":
        take(data.auction);
        message(data.price_cents == null ? "No winner" : `Sold for ${money(data.price_cents)}${data.winner ? ` to ${data.winner}` : ""}`);
        render();
        break;
    }
  });
  client.addEventListener("direct", ({ detail: { kind, data } }) => {
    if (view.auction?.id !== data.auction_id) return;
    if (kind === "outbid") {
      view.leading = false;
      take({ id: data.auction_id, price_cents: data.price_cents, min_next_cents: data.min_next_cents, ends_at: data.ends_at });
    } else if (kind === "auction_offer") {
      view.offer = data;
    }
    render();
  });

  $("max-form").addEventListener("submit", (submit) => {
    submit.preventDefault();
    const max = Math.round(Number(new FormData(submit.target).get("max")) * 100);
    if (view.auction) bid(minimumBid(view.auction), max);
  });

  $("confirm-offer").addEventListener("click", async () => {
    try {
      const order = await client.send("confirm", { reservation_id: view.offer.reservation_id, payment_ref: `demo-${Date.now()}` });
      view.order = order;
      message(`Order #${order.id} confirmed — ${money(order.total_cents)}`);
      $("auction-message").dataset.order = String(order.id);
    } catch (error) {
      message(error.message);
      if (error.error === "expired" || error.error === "conflict") view.offer = null;
      readOffer();
    }
    render();
  });

  setInterval(tick, 250);
}
