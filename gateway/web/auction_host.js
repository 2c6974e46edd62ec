// The host console's auction: create and start one for a product, stop it, and watch it live:
// price, deadline (by the server's clock), extensions, and the bid ladder (every accepted bid in
// server order, from GET /api/auctions/{id}/bids), re-read when the auction's state event comes.
import { shownPrice } from "./auction.js";
import { api, countdown, element, money } from "./client.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

export function mountAuctionConsole(client, base, attempt) {
  let current = null; // the auction as last seen
  let reading = null; // the ladder read in flight; one more is queued at most
  let again = false;

  function render() {
    $("stop-auction").disabled = !current || current.state === "ended";
    if (!current) return;
    const show = {
      state: current.state,
      price: money(shownPrice(current)),
      bids: String(current.bids),
      leader: current.leader || "–",
      extensions: `${current.extensions}/${current.max_extensions ?? "–"}`,
      reserve: current.has_reserve ? (current.reserve_met ? "met" : "not met") : "none",
    };
    for (const cell of document.querySelectorAll("[data-auction-stat]")) cell.textContent = show[cell.dataset.auctionStat];
    tick();
  }

  function tick() {
    const ends = current && current.state === "open" && current.ends_at ? countdown(current.ends_at - client.now()) : "–";
    const cell = document.querySelector('[data-auction-stat="ends"]');
    if (cell) cell.textContent = ends;
  }

  function take(auction) {
    if (!auction) return;
    current = current && current.id === auction.id ? { ...current, ...auction } : auction;
    render();
    readLadder();
  }

  async function readLadder() {
    if (!current) return;
    if (reading) {
      again = true;
      return;
    }
    const id = current.id;
    reading = api("GET", `/api/auctions/${id}/bids`, client.token).catch(() => null);
    const data = await reading;
    reading = null;
    if (data && current && current.id === id) {
      const rows = [...data.bids].reverse().map((bid) =>
        element(
          "tr",
          { "data-seq": String(bid.seq) },
          element("td", { text: `#${bid.seq}` }),
          element("td", { text: bid.bidder }),
          element("td", { text: money(bid.amount_cents) }),
          element("td", { text: bid.proxy ? "proxy" : "" }),
        ),
      );
      $("bid-ladder").querySelector("tbody").replaceChildren(...rows);
    }
    if (again) {
      again = false;
      readLadder();
    }
  }

  $("auction-form").addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const form = new FormData(submit.target);
    const cents = (name) => Math.round(Number(form.get(name)) * 100);
    const body = {
      product_id: Number(form.get("product_id")),
      start_cents: cents("start"),
      increment_cents: cents("increment"),
      duration_s: Number(form.get("duration")),
      snipe_window_s: Number(form.get("snipe")),
      max_extensions: Number(form.get("extensions")),
    };
    if (form.get("reserve")) body.reserve_cents = cents("reserve");
    const auction = await attempt(() => api("POST", `${base}/auctions`, client.token, body));
    if (!auction) return;
    take(auction);
    const started = await attempt(() => api("POST", `/api/auctions/${auction.id}/start`, client.token), `Auction ${auction.id} started`);
    if (started) take(started);
  });

  $("stop-auction").addEventListener("click", async () => {
    if (!current) return;
    const stopped = await attempt(() => api("POST", `/api/auctions/${current.id}/stop`, client.token), "Auction stopped");
    if (stopped) take(stopped);
  });

  client.addEventListener("snapshot", ({ detail: snapshot }) => take(snapshot.auction));
  client.addEventListener("event", ({ detail: event }) => {
    const data = event.data;
    if (event.type === "auction") take(data);
    if (event.type === "auction_started" || event.type === "auction_ended") take(data.auction);
    if (event.type === "auction_extended" && current?.id === data.auction_id) {
      take({ id: data.auction_id, ends_at: data.ends_at, extensions: data.extensions });
    }
  });
  setInterval(tick, 250);
  render();
}

/** The product choices of the auction form (the console reloads its products). */
export function auctionProducts(products) {
  $("auction-product").replaceChildren(
    ...products.map((p) => element("option", { value: String(p.id), text: `${p.title} (${p.sku})` })),
  );
}
