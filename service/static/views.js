// The page's views. Each takes a channel's state (or a declarations event) and renders it;
// none of them knows about the connection.

import { count, h, inkOn, netText, percent, plural, signed } from "./dom.js";
import { groupTotals } from "./groups.js";

const STATUS_LABELS = {
  awaiting: "Awaiting result",
  counting: "Counting",
  recount: "Recount",
  flash: "Winner announced, figures to follow",
  declared: "Declared",
};

function partyStyle(parties, code) {
  const colour = parties[code]?.colour ?? "#8a93a6";
  return { "--party": colour, "--party-ink": inkOn(colour) };
}

// --- the results banner ---------------------------------------------------------------

export class Banner {
  constructor(root, grouping) {
    this.root = root;
    this.groups = grouping.groups;
    this.rows = new Map();
    this.segments = new Map();
    const list = root.querySelector("#party-rows");
    const bar = root.querySelector("#seat-bar .segments");
    for (const group of this.groups) {
      const style = { "--party": group.colour, "--party-ink": inkOn(group.colour) };
      const seats = h("span", { class: "seats" }, "0");
      const change = h("span", { class: "change" }, "no change");
      const row = h(
        "li",
        { class: "party", "data-group": group.key, "data-seats": 0, style },
        h("span", { class: "swatch", "aria-hidden": "true" }),
        h("span", { class: "name" }, group.name, group.note ? h("small", {}, group.note) : null),
        seats,
        change,
      );
      list.append(row);
      this.rows.set(group.key, { row, seats, change });
      const segment = h("span", { class: "segment", style, title: group.name });
      bar.append(segment);
      this.segments.set(group.key, segment);
    }
    this.toGo = root.querySelector("#seats-to-go strong");
    this.majority = root.querySelector("#majority strong");
    this.working = root.querySelector("#working-majority");
    this.majorityLine = root.querySelector("#seat-bar .majority-line");
    this.workingLine = root.querySelector("#seat-bar .working-line");
    this.bar = root.querySelector("#seat-bar");
    this.drawn = false;
    this.outcome = root.querySelector("#outcome");
    this.exitPoll = root.querySelector("#exit-poll");
  }

  render(national) {
    // The first state is drawn as it is, not grown from nothing: a bar that shows the
    // seats only once a transition has run looks empty to anything that does not run it
    // (a screenshot, a throttled background tab). Later changes move smoothly.
    if (!this.drawn) this.bar.classList.add("instant");
    this.draw(national);
    if (!this.drawn) {
      void this.bar.offsetWidth; // lay out the widths now, before transitions come back
      this.bar.classList.remove("instant");
      this.drawn = true;
    }
  }

  draw(national) {
    const total = national.total_seats;
    const totals = this.groups.map((group) => [group, groupTotals(group, national.parties)]);
    for (const [group, { seats, net }] of totals) {
      const { row, seats: seatsCell, change } = this.rows.get(group.key);
      row.dataset.seats = seats;
      row.dataset.net = net;
      seatsCell.textContent = count(seats);
      change.textContent = netText(net);
      change.className = `change ${net > 0 ? "up" : net < 0 ? "down" : "same"}`;
      this.segments.get(group.key).style.width = `${(100 * seats) / total}%`;
    }
    this.root.querySelector("#seats-to-go").dataset.value = national.seats_to_declare;
    this.toGo.textContent = count(national.seats_to_declare);
    this.majority.textContent = count(national.majority);
    this.majorityLine.style.left = `${(100 * national.majority) / total}%`;
    this.majorityLine.querySelector(".tick-label").textContent = `Majority ${count(national.majority)}`;
    const working = national.working_majority;
    this.workingLine.hidden = this.working.hidden = working === undefined;
    if (working !== undefined) {
      this.workingLine.style.left = `${(100 * working) / total}%`;
      this.workingLine.querySelector(".tick-label").textContent = `Working majority ${count(working)}`;
      this.working.querySelector("strong").textContent = count(working);
    }
    const described = totals.map(([group, t]) => `${group.name} ${t.seats}`).join(", ");
    const workingText = working === undefined ? "" : `; ${working} for a working majority`;
    this.bar.setAttribute(
      "aria-label",
      `Seats declared: ${described}; ${national.seats_to_declare} to go; ${national.majority} for a majority${workingText}`,
    );
    this.renderOutcome(national, totals);
    this.renderExitPoll(national);
  }

  // Said in the banner's own terms: with the Speaker counted in a group, "short of a
  // majority" is reckoned from the seats the banner shows for that group.
  renderOutcome(national, totals) {
    const groupOf = (code) => totals.find(([group]) => group.codes.includes(code));
    const nameOf = (code) => {
      const found = groupOf(code);
      return found && found[0].codes[0] === code ? found[0].name : national.parties[code].name;
    };
    let text = "";
    if (national.majority_party) {
      const overall = national.parties[national.majority_party].overall_majority;
      text = `${nameOf(national.majority_party)} wins a majority`;
      if (overall !== undefined) text += ` of ${count(overall)}`;
      this.outcome.dataset.overallMajority = overall ?? "";
    } else if (national.leader) {
      const found = groupOf(national.leader);
      const seats = found && found[0].codes[0] === national.leader ? found[1].seats : national.parties[national.leader].seats;
      const short = Math.max(0, national.majority - seats);
      text = `${nameOf(national.leader)} lead, ${plural(short, "seat", "seats")} short of a majority`;
    }
    this.outcome.textContent = text;
  }

  renderExitPoll(national) {
    const poll = national.exit_poll;
    this.exitPoll.hidden = !poll;
    if (!poll) return;
    // The projection grouped the way the banner groups the results.
    const projected = Object.fromEntries(Object.entries(poll.seats).map(([code, seats]) => [code, { seats }]));
    const parts = this.groups
      .map((group) => [group.name, groupTotals(group, projected).seats])
      .filter(([, seats]) => seats > 0)
      .map(([name, seats]) => `${name} ${count(seats)}`);
    this.exitPoll.textContent = `Exit poll: ${parts.join(" \u00b7 ")}`;
  }
}

// --- the declarations feed ----------------------------------------------------------------

const FEED_LENGTH = 30;
const ANNOUNCE_AFTER_MS = 1200; // gather a burst into one announcement

export class Feed {
  constructor(list, announcer, parties, night) {
    this.list = list;
    this.announcer = announcer;
    this.parties = parties;
    this.night = night;
    this.pending = [];
  }

  // A snapshot: the log's recent entries, newest last. Not announced, nor highlighted.
  reset(recent) {
    for (const entry of recent) this.night.begin(entry.constituency.declared_at);
    this.list.replaceChildren(...recent.slice(-FEED_LENGTH).reverse().map((entry) => this.item(entry)));
  }

  add(entry) {
    this.night.begin(entry.constituency.declared_at);
    const item = this.item(entry);
    item.classList.add("new");
    this.list.prepend(item);
    while (this.list.children.length > FEED_LENGTH) this.list.lastElementChild.remove();
    this.announce(entry.headline);
  }

  item(entry) {
    const seat = entry.constituency;
    const withdrawn = entry.kind === "retraction";
    const party = withdrawn ? seat.previous : seat.winner?.party;
    const badge = withdrawn ? "withdrawn" : seat.result ?? "hold";
    return h(
      "li",
      {
        class: `declaration ${entry.kind}`,
        "data-seq": entry.seq,
        "data-kind": entry.kind,
        "data-constituency": seat.id,
        style: partyStyle(this.parties, party),
      },
      h("span", { class: `badge ${badge}` }, badge.toUpperCase()),
      h("p", { class: "headline" }, entry.headline),
      h("time", { datetime: seat.declared_at ?? "" }, this.night.format(seat.declared_at)),
    );
  }

  announce(headline) {
    this.pending.push(headline);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const [latest, count] = [this.pending.at(-1), this.pending.length];
      this.announcer.textContent = count > 3 ? `${count} new results. Latest: ${latest}` : this.pending.join(". ");
      this.pending = [];
    }, ANNOUNCE_AFTER_MS);
  }
}

// --- one constituency ------------------------------------------------------------------------

export function renderSeat(root, seat, parties, night) {
  const partyName = (code) => parties[code]?.name ?? code;
  const header = h(
    "header",
    { class: "seat-head" },
    h("h3", { id: "seat-name" }, seat.name),
    h("p", { class: "seat-where" }, `${seat.region} \u00b7 ${seat.nation}`),
    h("p", { class: `status ${seat.status}`, "data-field": "status" }, STATUS_LABELS[seat.status] ?? seat.status),
  );
  const parts = [header];
  if (seat.winner) {
    const verdict = seat.result === "gain" ? `gain from ${partyName(seat.gain_from)}` : "hold";
    parts.push(
      h(
        "p",
        { class: `verdict ${seat.result}`, style: partyStyle(parties, seat.winner.party) },
        h("span", { class: "badge " + seat.result }, seat.result.toUpperCase()),
        h("span", {}, `${partyName(seat.winner.party)} ${verdict}`),
      ),
      h("p", { class: "winner" }, "Elected: ", h("strong", { "data-field": "winner" }, seat.winner.name)),
    );
  } else {
    parts.push(h("p", { class: "previous" }, `Held before by ${partyName(seat.previous)}`));
  }
  const facts = [];
  const fact = (label, field, value) =>
    facts.push(h("div", {}, h("dt", {}, label), h("dd", { "data-field": field }, value)));
  if (seat.majority !== undefined) fact("Majority", "majority", count(seat.majority));
  if (seat.turnout !== undefined) fact("Turnout", "turnout", percent(seat.turnout));
  fact("Electorate", "electorate", count(seat.electorate));
  if (seat.declared_at) {
    fact("Declared", "declared_at", h("time", { datetime: seat.declared_at }, night.format(seat.declared_at)));
  }
  if (seat.corrections) fact("Corrections", "corrections", count(seat.corrections));
  parts.push(h("dl", { class: "facts" }, facts));
  if (seat.candidates) {
    const top = Math.max(...seat.candidates.map((c) => c.share), 1);
    parts.push(
      h(
        "table",
        { class: "candidates" },
        h("caption", { class: "sr-only" }, `Candidates in ${seat.name}`),
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, "Candidate"), h("th", { scope: "col" }, "Votes"), h("th", { scope: "col" }, "Share")),
        ),
        h(
          "tbody",
          {},
          seat.candidates.map((c) =>
            h(
              "tr",
              { style: { ...partyStyle(parties, c.party), "--share": `${(100 * c.share) / top}%` } },
              h("th", { scope: "row" }, h("span", { class: "who" }, c.name), h("span", { class: "party-name" }, partyName(c.party))),
              h("td", { class: "num" }, count(c.votes)),
              h("td", { class: "num share" }, percent(c.share)),
            ),
          ),
        ),
      ),
    );
  }
  root.replaceChildren(...parts);
}

// --- a region or nation ------------------------------------------------------------------

export function renderArea(root, area, parties) {
  const rows = Object.entries(area.parties)
    .filter(([, p]) => p.seats > 0 || p.votes > 0)
    .sort(([a, p], [b, q]) => q.seats - p.seats || q.votes - p.votes || a.localeCompare(b));
  const table = h(
    "table",
    { class: "area-table" },
    h("caption", { class: "sr-only" }, `Parties in ${area.name}`),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Party"),
        h("th", { scope: "col" }, "Seats"),
        h("th", { scope: "col" }, "Net"),
        h("th", { scope: "col" }, "Share"),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map(([code, p]) =>
        h(
          "tr",
          { "data-party": code, "data-seats": p.seats, style: partyStyle(parties, code) },
          h(
            "th",
            { scope: "row" },
            h("span", { class: "party-label" }, h("span", { class: "swatch", "aria-hidden": "true" }), parties[code]?.name ?? code),
          ),
          h("td", { class: "num seats" }, count(p.seats)),
          h("td", { class: `num ${p.net > 0 ? "up" : p.net < 0 ? "down" : "same"}` }, signed(p.net)),
          h("td", { class: "num" }, percent(p.share)),
        ),
      ),
    ),
  );
  const summary = h(
    "p",
    { class: "area-summary" },
    h("strong", {}, count(area.declared)),
    ` of ${plural(area.total_seats, "seat", "seats")} declared`,
  );
  root.replaceChildren(summary, rows.length ? table : h("p", { class: "empty" }, "No results yet."));
}
