// The viewer overlay's group deal: the price against the group price, the group size and window;
// "Start a group", the open groups (places left, a countdown by the server's clock) with "Join",
// my group's progress with "Leave", and its outcome (formed: an order at the group price;
// failed: the place released), kept up from the room's group events. Commands go over the
// WebSocket (`group_start`, `group_join`, `group_leave`); the open groups are re-read over HTTP
// after every snapshot, since the events in between may have been conflated or missed.
import { api, countdown, element, money } from "./client.js";

const REFUSED = {
  group_full: "That group just filled: start your own.",
  group_failed: "That group's window closed.",
  already_member: "You are in that group already.",
  not_member: "You are not in that group any more.",
  sold_out: "Sold out: no place is left.",
  limit: "You have as many as a buyer may.",
  not_open: "The group deal is not open.",
};

const MOVED_TO = { sale_started: "open", sale_ended: "ended" };

function newKey() {
  return globalThis.crypto?.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

/** The panel's nodes, made here so the page needs only this module. */
function build() {
  const node = (tag, testid, attributes = {}, ...children) =>
    element(tag, { "data-testid": testid, ...attributes }, ...children);
  const parts = {
    was: node("s", "group-was-price"),
    price: node("strong", "group-price", { class: "sale-price" }),
    terms: node("span", "group-terms"),
    state: node("span", "group-state"),
    start: node("button", "group-start", { text: "Start a group" }),
    open: node("ol", "group-open", { class: "group-list" }),
    progress: node("span", "group-progress"),
    timer: node("strong", "group-timer"),
    leave: node("button", "group-leave", { class: "cancel secondary", text: "Leave" }),
    outcome: node("p", "group-outcome", { class: "standing", role: "status" }),
    message: node("p", "group-message", { class: "sale-message", role: "status" }),
  };
  parts.mine = node("div", "group-mine", { class: "hold" },
    element("span", {}, "Your group: ", parts.progress, " · ", parts.timer, " left"), parts.leave);
  parts.section = node("section", "group", { class: "group", hidden: "" },
    element("div", { class: "sale-head" }, element("strong", { text: "Group deal" }), parts.was, parts.price),
    element("div", { class: "sale-figures" }, parts.terms, parts.state),
    parts.start, parts.open, parts.mine, parts.outcome, parts.message);
  return parts;
}

export function mountGroupDeal(client, after) {
  const ui = build();
  after.after(ui.section);
  // deal: the live group deal; groups: id -> group as last seen; mine: my group's id.
  const view = { deal: null, groups: new Map(), mine: null };
  const remembered = (deal) => `live-group:${deal.id}`;

  function take(deal) {
    if (!deal || deal.kind !== "group") {
      view.deal = null;
      render();
      return;
    }
    if (view.deal?.id !== deal.id) {
      Object.assign(view, { groups: new Map(), mine: null });
      ui.outcome.textContent = "";
      ui.message.textContent = "";
    }
    view.deal = deal;
    render();
  }

  function keep(group) {
    if (!view.deal || group.sale_id !== view.deal.id) return;
    const known = view.groups.get(group.id);
    view.groups.set(group.id, known ? { ...known, ...group } : group);
    if (group.id === view.mine && (group.state === "formed" || group.state === "failed")) decided(group);
  }

  function decided(group) {
    view.mine = null;
    sessionStorage.removeItem(remembered(view.deal));
    const outcome = group.state === "formed"
      ? `Group formed! Your order at the group price: ${money(view.deal.group_price_cents)}`
      : "The group did not fill in time: your place was released.";
    ui.outcome.textContent = outcome;
    ui.outcome.dataset.outcome = group.state;
  }

  function mine(group) {
    view.mine = group.id;
    sessionStorage.setItem(remembered(view.deal), String(group.id));
    ui.outcome.textContent = "";
    delete ui.outcome.dataset.outcome;
    keep(group);
  }

  function openGroups() {
    const now = client.now();
    return [...view.groups.values()]
      .filter((g) => g.state === "forming" && g.places_left > 0 && g.closes_at > now && g.id !== view.mine)
      .sort((a, b) => a.closes_at - b.closes_at);
  }

  function render() {
    const deal = view.deal;
    ui.section.hidden = !deal;
    if (!deal) return;
    ui.section.dataset.state = deal.state;
    ui.was.textContent = money(deal.price_cents);
    ui.price.textContent = money(deal.group_price_cents);
    ui.terms.textContent = `Groups of ${deal.group_size} · ${deal.group_window_s} s to fill`;
    ui.state.textContent = deal.state === "ended" ? "Ended" : deal.state === "scheduled" ? "Starting soon" : "";
    const live = deal.state === "open" && Boolean(client.token);
    ui.start.disabled = !live || view.mine !== null;
    ui.start.textContent = client.token ? "Start a group" : "Sign in to join a group";
    ui.open.replaceChildren(
      ...openGroups().map((g) =>
        element("li", { "data-group": String(g.id) },
          element("span", { "data-role": "places" }, `${g.members}/${g.size} · ${g.places_left} place${g.places_left === 1 ? "" : "s"} left · `),
          element("span", { "data-role": "countdown", "data-closes": String(g.closes_at) }, countdown(g.closes_at - client.now())),
          element("button", { "data-testid": `join-${g.id}`, text: "Join", onclick: () => join(g.id) })),
      ),
    );
    for (const button of ui.open.querySelectorAll("button")) button.disabled = !live || view.mine !== null;
    const group = view.mine === null ? null : view.groups.get(view.mine);
    ui.mine.hidden = !group;
    if (group) ui.progress.textContent = `${group.members}/${group.size}`;
    tick();
  }

  function tick() {
    for (const cell of ui.open.querySelectorAll("[data-closes]")) {
      const left = Number(cell.dataset.closes) - client.now();
      if (left <= 0) cell.closest("li").remove();
      else cell.textContent = countdown(left);
    }
    const group = view.mine === null ? null : view.groups.get(view.mine);
    if (group) ui.timer.textContent = countdown(group.closes_at - client.now());
  }

  async function command(type, fields) {
    ui.message.textContent = "";
    try {
      return await client.send(type, fields);
    } catch (error) {
      ui.message.textContent = REFUSED[error.error] || error.message;
      ui.message.dataset.error = error.error;
      return null;
    } finally {
      render();
    }
  }

  async function start() {
    const group = await command("group_start", { sale_id: view.deal.id, idempotency_key: newKey() });
    if (group) {
      mine(group);
      ui.message.textContent = "Group started: share the deal so others join in time.";
      render();
    }
  }

  async function join(id) {
    const group = await command("group_join", { group_id: id });
    if (!group) return;
    mine(group);
    if (group.state !== "formed") ui.message.textContent = "You joined the group.";
    render();
  }

  async function leave() {
    const id = view.mine;
    const group = await command("group_leave", { group_id: id });
    if (!group) return;
    view.mine = null;
    sessionStorage.removeItem(remembered(view.deal));
    keep(group);
    ui.message.textContent = "You left the group: your place was released.";
    render();
  }

  /** The open groups, and my group (remembered for this tab), as the server has them now. */
  async function reread() {
    const deal = view.deal;
    if (!deal || deal.state === "scheduled") return;
    const listed = await api("GET", `/api/sales/${deal.id}/groups`, client.token).catch(() => null);
    if (view.deal?.id !== deal.id) return;
    for (const group of listed?.groups || []) keep(group);
    const id = Number(sessionStorage.getItem(remembered(deal)));
    if (id && view.mine === null) {
      const group = await api("GET", `/api/groups/${id}`, client.token).catch(() => null);
      if (group?.joined && view.deal?.id === deal.id) mine(group);
      else if (group && view.deal?.id === deal.id) sessionStorage.removeItem(remembered(deal));
    }
    render();
  }

  client.addEventListener("snapshot", ({ detail: snapshot }) => {
    take(snapshot.sale);
    reread();
  });
  client.addEventListener("event", ({ detail: event }) => {
    const data = event.data;
    switch (event.type) {
      case "sale_scheduled": case "sale_started": case "sale_ended": case "sold_out":
        // The event says the state: a group deal's `sale` may carry the one it moved from.
        take({ ...data.sale, state: MOVED_TO[event.type] || data.sale.state });
        if (event.type === "sale_started") reread();
        break;
      case "group_started": case "group_progress": case "group_formed": case "group_failed":
        keep(data.group);
        render();
        break;
    }
  });
  ui.start.addEventListener("click", start);
  ui.leave.addEventListener("click", leave);
  setInterval(tick, 250);
}
