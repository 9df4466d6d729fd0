// The lower third: each declaration as it arrives — winner, party colour, GAIN/HOLD,
// majority — one at a time, each for `seconds`, none skipped when several come together.

import { inkOn } from "../../static/dom.js";
import { compareSeq } from "../../static/live.js";
import {
  $,
  cssColour,
  figure,
  numberOption,
  option,
  partyColourOverrides,
  setText,
  start,
} from "./template.js";

const SECONDS = numberOption("seconds", 8, { min: 0, max: 3600 });
const SEATS = new Set((option("seat") ?? "").split(",").map((s) => s.trim()).filter(Boolean));
const KINDS = new Set((option("kinds") ?? "declaration,correction,flash").split(","));
const LABELS = { flash: "Flash", correction: "Correction", retraction: "Withdrawn" };
const colours = partyColourOverrides();

// What one lower third shows, from either source: a declarations entry off /ws, or the
// flat keys of /graphics/latest or /graphics/constituency/{id} through update().
function fromEntry(entry, election) {
  const seat = entry.constituency;
  const party = seat.winner?.party ?? "";
  const names = election.parties;
  return {
    key: entry.seq,
    seq: entry.seq,
    kind: entry.kind,
    id: seat.id,
    seat: seat.name,
    winner: seat.winner?.name ?? "",
    party,
    partyName: names[party]?.name ?? party,
    colour: names[party]?.colour ?? "",
    result: seat.result ?? "",
    gainFromName: names[seat.gain_from]?.name ?? seat.gain_from ?? "",
    majority: seat.majority ?? "",
  };
}

function fromFlat(flat) {
  const kind = flat.kind || (flat.status === "flash" ? "flash" : "declaration");
  const fields = ["id", "winner_name", "winner_party", "result", "majority", "corrections"];
  return {
    key: flat.seq ? `${flat.seq} ${flat.id}` : fields.map((f) => flat[f]).join("|"),
    seq: flat.seq || null,
    kind,
    id: flat.id ?? "",
    seat: flat.name ?? "",
    winner: flat.winner_name ?? "",
    party: flat.winner_party ?? "",
    partyName: flat.winner_party_name || flat.winner_party || "",
    colour: flat.winner_colour ?? "",
    result: flat.result ?? "",
    gainFromName: flat.gain_from_name || flat.gain_from || "",
    majority: flat.majority ?? "",
  };
}

class LowerThird {
  constructor(element) {
    this.element = element;
    this.queue = [];
    this.seen = new Set();
    this.current = null;
    this.playing = false;
    this.timer = null;
    this.shown = []; // keys in the order shown, for automation and tests
  }

  // Queue an item to show; an item already queued or shown (the same seq) is not repeated.
  add(item) {
    if (!item.winner && item.kind !== "retraction") return;
    if (!KINDS.has(item.kind) || (SEATS.size && !SEATS.has(item.id))) return;
    if (this.seen.has(item.key)) return;
    this.seen.add(item.key);
    this.queue.push(item);
    this.renderCount();
    if (this.playing && !this.current) this.showNext();
  }

  update(values) {
    this.add(fromFlat(values));
  }

  play() {
    this.playing = true;
    if (!this.current) this.showNext();
  }

  stop() {
    this.playing = false;
    clearTimeout(this.timer);
    this.current = null;
    this.element.dataset.state = "out";
  }

  // The operator's cue: the next one now.
  next() {
    if (this.playing) this.showNext();
  }

  showNext() {
    clearTimeout(this.timer);
    const item = this.queue.shift();
    this.current = item ?? null;
    if (!item) {
      this.element.dataset.state = "out";
      return;
    }
    this.render(item);
    this.shown.push(item.key);
    this.element.dataset.state = "in";
    // seconds=0: on screen until next() or stop().
    if (SECONDS > 0) this.timer = setTimeout(() => this.showNext(), SECONDS * 1000);
  }

  render(item) {
    const colour = colours.get(item.party) ?? cssColour(item.colour) ?? "";
    this.element.style.setProperty("--party", colour || "var(--accent)");
    this.element.style.setProperty("--party-ink", inkOn(colour || "#ffcc33"));
    this.element.dataset.kind = item.kind;
    this.element.dataset.key = item.key;
    setText($("#lt-party"), item.party);
    const result = item.kind === "retraction" ? "" : item.result.toUpperCase();
    setText($("#lt-result"), result);
    setText($("#lt-kind"), LABELS[item.kind] ?? "");
    setText($("#lt-seat"), item.seat);
    setText($("#lt-winner"), item.kind === "retraction" ? "Result withdrawn" : item.winner);
    setText($("#lt-party-name"), item.kind === "retraction" ? "" : item.partyName);
    const details = [];
    if (item.result === "gain" && item.gainFromName) details.push(`Gain from ${item.gainFromName}`);
    if (item.majority !== "" && item.kind !== "retraction") {
      details.push(`Majority ${figure(item.majority)}`);
    } else if (item.kind === "flash") details.push("Figures to follow");
    setText($("#lt-detail"), details.join(" \u00b7 "));
    this.renderCount();
  }

  renderCount() {
    setText($("#lt-more"), this.queue.length ? `+${this.queue.length} more` : "");
  }
}

const graphic = new LowerThird($("#lower-third"));
let lastSeq = null;
let lastEpoch = null;
await start(graphic, "declarations", (message, election, live) => {
  if (message.type === "event") {
    lastSeq = message.seq;
    lastEpoch = live.epoch;
    graphic.add(fromEntry(message.data, election));
  } else if (message.type === "snapshot") {
    // A fresh snapshot after a reconnect that could not resume: what it holds beyond
    // the last seq seen still goes on air. The first snapshot is the past: not shown.
    const sameRun = lastEpoch === live.epoch || lastEpoch === "0-0";
    if (lastSeq !== null && sameRun) {
      for (const entry of message.data.recent ?? []) {
        if (compareSeq(entry.seq, lastSeq) > 0) graphic.add(fromEntry(entry, election));
      }
    }
    lastSeq = message.seq;
    lastEpoch = live.epoch;
  }
});
