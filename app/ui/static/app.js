// The dashboard's entry point: picks the view from the address (/ui or /ui/workflows/{key}),
// moves between views without reloading, and keeps the API token and the stats strip.

import { onUnauthorized, setToken, token } from "./api.js";
import { detailView } from "./detail.js";
import { byId, tickAges } from "./dom.js";
import { listView } from "./list.js";
import { startStatsStrip } from "./metrics.js";

const DETAIL_PATH = /^\/ui\/workflows\/([^/]+)\/?$/;
let current = null;
let sampleStats = () => {};

function showBanner(text) {
  const banner = byId("banner");
  banner.textContent = text;
  banner.hidden = !text;
}

function route() {
  current?.stop();
  const match = DETAIL_PATH.exec(location.pathname);
  const next = match ? detailView : listView;
  for (const view of [listView, detailView]) view.element().hidden = view !== next;
  current = next;
  next.start({ key: match ? decodeURIComponent(match[1]) : null, navigate });
}

function navigate(url) {
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  route();
  window.scrollTo(0, 0);
}

function showTokenState() {
  byId("token-state").textContent = token() ? "API token ✓" : "API token";
  byId("token-input").value = token();
}

function wireToken() {
  showTokenState();
  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(byId("token-input").value.trim());
    showTokenState();
    showBanner("");
    sampleStats();
    route();
  });
  byId("token-clear").addEventListener("click", () => {
    setToken("");
    showTokenState();
    route();
  });
  onUnauthorized((error) => {
    showBanner(
      token()
        ? `The service refused the API token (${error.message}). Check it in the field above.`
        : "This service needs an API token (its operator set API_TOKENS): enter it in the field above.",
    );
  });
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", route);

wireToken();
sampleStats = startStatsStrip();
setInterval(tickAges, 1000);
route();
