// The seat bar: every party's seats along one bar of the whole house, with the majority
// line and, where the election has one, the working-majority line.

import { h } from "../../static/dom.js";
import {
  $,
  figure,
  numberOption,
  option,
  partyColourOverrides,
  setText,
  start,
} from "./template.js";

const CHANNEL = option("channel", "national");
const TOP = numberOption("top", 6, { min: 0, max: 50 });
const TITLE = option("title");
const colours = partyColourOverrides();

const count = (value) => (value === "" || value === undefined ? null : Number(value));

// The flat keys of /graphics/national (update()): the parties ranked as party1_, party2_...
function fromFlat(flat) {
  const parties = [];
  for (let rank = 1; flat[`party${rank}_code`]; rank += 1) {
    parties.push({
      code: flat[`party${rank}_code`],
      name: flat[`party${rank}_name`] ?? "",
      colour: flat[`party${rank}_colour`] ?? "",
      seats: Number(flat[`party${rank}_seats`]) || 0,
    });
  }
  return {
    title: flat.election_name ?? "",
    total: count(flat.total_seats),
    majority: count(flat.majority),
    working: count(flat.working_majority),
    declared: count(flat.declared),
    parties,
  };
}

// A national, region or nation state off /ws; ranked as the service ranks the leader.
function fromState(state, election) {
  const entries = Object.entries(state.parties ?? {});
  entries.sort(([a, p], [b, q]) => q.seats - p.seats || q.votes - p.votes || (a < b ? -1 : 1));
  return {
    title: state.name ?? election.name ?? "",
    total: state.total_seats,
    majority: state.majority ?? null,
    working: state.working_majority ?? null,
    declared: state.declared,
    parties: entries.map(([code, p]) => ({
      code,
      name: p.name ?? election.parties[code]?.name ?? code,
      colour: election.parties[code]?.colour ?? "",
      seats: p.seats,
    })),
  };
}

class SeatBar {
  constructor(element) {
    this.element = element;
    this.model = null;
    if (option("position") === "bottom") element.classList.add("at-bottom");
  }

  update(values) {
    this.show(fromFlat(values));
  }

  show(model) {
    this.model = model;
    this.render();
  }

  play() {
    this.element.dataset.state = "in";
  }

  stop() {
    this.element.dataset.state = "out";
  }

  next() {} // one state only: nothing to step through

  render() {
    const { title, total, majority, working, declared, parties } = this.model;
    setText($("#sb-title"), TITLE ?? (title || "Seats"));
    setText($("#sb-declared"), total ? `${figure(declared)} of ${figure(total)} declared` : "");
    const colour = (party) => colours.get(party.code) ?? (party.colour || "#888888");
    const won = parties.filter((party) => party.seats > 0);
    $("#sb-segments").replaceChildren(
      ...won.map((party) =>
        h("div", {
          class: "sb-segment",
          title: `${party.name} ${party.seats}`,
          "data-party": party.code,
          style: { width: `${(100 * party.seats) / total}%`, background: colour(party) },
        }),
      ),
    );
    this.line($("#sb-majority"), majority, total, `Majority ${figure(majority)}`);
    this.line($("#sb-working"), working, total, `Working majority ${figure(working)}`);
    $("#sb-legend").replaceChildren(
      ...won.slice(0, TOP).map((party) =>
        h(
          "li",
          { "data-party": party.code, style: { "--party": colour(party) } },
          h("span", { class: "sb-swatch" }),
          h("span", { class: "sb-name" }, party.name),
          h("span", { class: "sb-seats" }, figure(party.seats)),
        ),
      ),
    );
  }

  line(element, seats, total, label) {
    const shown = Boolean(seats && total);
    element.hidden = !shown;
    if (!shown) return;
    element.style.left = `${(100 * seats) / total}%`;
    setText(element.querySelector(".sb-line-label"), label);
  }
}

const graphic = new SeatBar($("#seat-bar"));
await start(graphic, CHANNEL, (message, election) => {
  if (message.state) graphic.show(fromState(message.state, election));
});
