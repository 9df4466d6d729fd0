// The live page: wires the connection to the views. No build step: plain ES modules.

import { NightClock, h } from "./dom.js";
import { renderFeedCheck } from "./feedcheck.js";
import { grouping } from "./groups.js";
import { Live } from "./live.js";
import { Coverage, SeatPosts } from "./posts.js";
import { SeatSearch } from "./search.js";
import { Banner, Feed, renderArea, renderSeat } from "./views.js";

const params = new URLSearchParams(location.search);
const $ = (selector) => document.querySelector(selector);
const STATUS_LABELS = {
  connecting: "Connecting",
  live: "Live",
  reconnecting: "Reconnecting",
  resynced: "Resynced",
};

// Where the service requires subscriber tokens, open the page as /?token=... : the token
// goes with every request and the websocket (browsers cannot set headers on a websocket).
const token = params.get("token");

function withToken(url) {
  if (token) url.searchParams.set("token", token);
  return url;
}

// GET a JSON document relative to the page, retrying (with backoff) until the service answers.
// `cache: "no-cache"` asks the service even when the browser holds a fresh copy (the API may
// be cached for a second): for what must be at least as new as the live channels.
async function getJSON(path, { cache = "default" } = {}) {
  for (let delay = 500; ; delay = Math.min(delay * 2, 5000)) {
    try {
      const response = await fetch(withToken(new URL(path, document.baseURI)), { cache });
      if (response.ok) return await response.json();
    } catch {
      // the service is not up yet: try again
    }
    await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random() / 2)));
  }
}

function socketUrl() {
  const url = withToken(new URL("ws", document.baseURI));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

// Server-Sent Events, where a proxy on the way refuses websockets (the token in the address:
// an EventSource cannot set headers either).
const streamUrl = () => withToken(new URL("sse", document.baseURI)).href;

// Keep the page's address in step with what is shown, so it can be bookmarked or shared.
function remember(name, value) {
  if (value) params.set(name, value);
  else params.delete(name);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

function seqTime(seq) {
  const ms = Number(seq.split("-")[0]);
  return ms ? new Date(ms).toLocaleTimeString("en-GB") : "";
}

async function main() {
  const election = (await getJSON("api/election")).data;
  const parties = election.parties;
  $("#election-name").textContent = election.name;
  if (election.attribution) $("#attribution").textContent = election.attribution;
  document.title = `${election.name} · live results`;

  const connection = $("#connection");
  const live = new Live(socketUrl(), {
    streamUrl: streamUrl(),
    onStatus(status) {
      connection.dataset.state = status;
      connection.dataset.transport = live.transport;
      connection.querySelector(".label").textContent = STATUS_LABELS[status] ?? status;
      const via = connection.querySelector(".transport");
      via.hidden = live.transport !== "sse";
      via.textContent = via.hidden ? "" : "via SSE";
    },
  });

  const night = new NightClock();
  night.onChange = () => night.retime(document);
  const banner = new Banner($("#banner"), grouping(params, parties));
  live.watch("national", (message) => {
    night.begin(message.state.exit_poll?.published_at);
    banner.render(message.state);
    renderFeedCheck($("#feed-check"), message.state, parties);
    $("#updated").textContent = message.seq === "0-0" ? "" : `updated ${seqTime(message.seq)}`;
  });

  const feed = new Feed($("#feed"), $("#announcer"), parties, night);
  live.watch("declarations", (message) => {
    if (message.type === "snapshot") feed.reset(message.data.recent);
    else feed.add(message.data);
  });

  // Live coverage; a seat a post is about is one click away.
  const seatNames = new Map();
  const coverage = new Coverage($("#posts"), $("#no-posts"), {
    night,
    seatName: (id) => seatNames.get(id),
    onSeat: (id) => chooseSeat(id),
  });
  live.watch("posts", (message) => {
    if (message.type === "snapshot") coverage.reset(message.data.recent);
    else {
      coverage.apply(message.data);
      if (message.data.kind === "post") feed.announce(`New post: ${message.data.post.title}`);
    }
  });
  live.start();
  window.seatcast = { live }; // for the console (and the browser tests)

  // One constituency, followed live, with the posts about it.
  const seatCard = $("#seat-card");
  const seatPosts = new SeatPosts($("#seat-posts"), coverage, (id) =>
    getJSON(`api/posts?constituency=${encodeURIComponent(id)}`, { cache: "no-cache" }),
  );
  let seatChannel = null;
  const showSeat = (id) => {
    if (seatChannel) live.unwatch(seatChannel);
    seatChannel = `constituency:${id}`;
    live.watch(seatChannel, (message) => {
      renderSeat(seatCard, message.state, parties, night);
      $("#seat-result").dataset.constituency = id;
    });
    seatPosts.show(id);
    remember("seat", id);
  };
  const chooseSeat = (id) => {
    if (!seatNames.has(id)) return;
    $("#seat-search").value = seatNames.get(id);
    showSeat(id);
    $("#seat").scrollIntoView({ block: "nearest" });
  };
  const search = new SeatSearch($("#seat-search"), $("#seat-options"), (seat) => showSeat(seat.id));
  getJSON("api/constituencies").then(({ data }) => {
    for (const { id, name } of Object.values(data)) seatNames.set(id, name);
    coverage.render();
    search.setSeats(
      Object.values(data).map(({ id, name, region, nation }) => ({ id, name, region, nation })),
    );
    if (params.get("seat") in data) {
      $("#seat-search").value = data[params.get("seat")].name;
      showSeat(params.get("seat"));
    }
  });

  // A nation or region's table.
  const select = $("#area-select");
  const areaResult = $("#area-result");
  let areaChannel = null;
  const showArea = (channel, { keep = true } = {}) => {
    if (areaChannel) live.unwatch(areaChannel);
    areaChannel = channel || null;
    if (keep) remember("area", areaChannel);
    if (!areaChannel) return areaResult.replaceChildren();
    live.watch(areaChannel, (message) => renderArea(areaResult, message.state, parties));
  };
  select.addEventListener("change", () => showArea(select.value));
  const [nations, regions] = await Promise.all([getJSON("api/nations"), getJSON("api/regions")]);
  const group = (label, kind, areas) =>
    h(
      "optgroup",
      { label },
      Object.entries(areas).map(([slug, area]) => h("option", { value: `${kind}:${slug}` }, area.name)),
    );
  select.append(group("Nations", "nation", nations.data), group("Regions", "region", regions.data));
  const wanted = params.get("area") ?? `nation:${Object.keys(nations.data)[0]}`;
  if ([...select.options].some((option) => option.value === wanted)) {
    select.value = wanted;
    showArea(wanted, { keep: params.has("area") });
  }
}

main();
