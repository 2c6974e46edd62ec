// The overlay's share links (README, "Share links"): the Share button asks the service for this
// viewer's signed link, shows it and copies it where the browser allows; and a page opened with
// `?share=CODE` carries the code on connect (docs/protocol.md), so that its sharer is credited.
import { api } from "./client.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

/** The connect parameters of the share code this page was opened with (none without one). */
export function shareConnectParams() {
  const code = new URLSearchParams(location.search).get("share");
  return code ? { share: code } : {};
}

export function mountShare(client, room) {
  const message = (text, error = "") => {
    $("share-message").textContent = text;
    $("share-message").dataset.error = error;
  };
  $("share").addEventListener("click", async () => {
    if (!client.token) {
      message("Sign in to share.");
      return;
    }
    let link;
    try {
      const shared = await api("POST", `/api/rooms/${encodeURIComponent(room)}/share`, client.token);
      link = new URL(shared.link, location.origin).href;
    } catch (error) {
      message(error.message, error.error);
      return;
    }
    $("share-link").value = link;
    $("share-link").hidden = false;
    try {
      await navigator.clipboard.writeText(link);
      message("Link copied: whoever buys through it is credited to you.");
    } catch {
      $("share-link").select();
      message("Copy your link: whoever buys through it is credited to you.");
    }
  });
}
