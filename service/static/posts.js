// Live coverage: the posts channel as a list, newest first, and the posts about one seat.
// Posts are plain text from the desks: every piece goes in as text (h() never parses
// markup), and dir="auto" keeps right-to-left text from reordering what is around it.

import { compareSeq } from "./live.js";
import { breakable, h } from "./dom.js";

const SHOWN = 50;
const KEPT_EVENTS = 200; // for a seat's posts fetched while events kept arriving
const LONG_BODY = 600; // characters: longer bodies are folded until asked for

// A post as a list item. `level` is its title's heading level; `seatName(id)` names a seat
// it is about, and `onSeat(id)` follows it.
export function postItem(post, { night, seatName, onSeat, level = 3 }) {
  const byline = [post.author, post.role].filter(Boolean).join(", ");
  const seats = (post.constituencies ?? []).map((id) =>
    h("button", { type: "button", class: "seat-link", "data-constituency": id }, seatName(id) ?? id),
  );
  const long = post.body.length > LONG_BODY;
  const body = h("div", { class: `post-body${long ? " folded" : ""}`, dir: "auto" }, breakable(post.body));
  const more = long ? h("button", { type: "button", class: "more", "aria-expanded": "false" }, "Read more") : null;
  more?.addEventListener("click", () => {
    const open = body.classList.toggle("folded") === false;
    more.setAttribute("aria-expanded", String(open));
    more.textContent = open ? "Show less" : "Read more";
  });
  const item = h(
    "li",
    { class: "post", "data-post-id": post.id, "data-seq": post.seq },
    h(
      "p",
      { class: "post-meta" },
      h("time", { datetime: post.published_at }, night.format(post.published_at)),
      byline ? h("span", { class: "byline", dir: "auto" }, breakable(byline)) : null,
    ),
    h(`h${level}`, { class: "post-title", dir: "auto" }, breakable(post.title)),
    body,
    more,
    seats.length ? h("p", { class: "post-seats" }, "About ", seats) : null,
  );
  item.addEventListener("click", (event) => {
    const link = event.target.closest(".seat-link");
    if (link) onSeat(link.dataset.constituency);
  });
  return item;
}

// The whole log: `reset` with a snapshot's recent posts (oldest first), `apply` each event.
export class Coverage {
  constructor(list, empty, options) {
    this.list = list;
    this.empty = empty;
    this.options = options;
    this.posts = [];
    this.events = [];
    this.listeners = new Set();
    this.onReset = () => {};
  }

  // A snapshot: on a reconnect, it may stand for events this page never saw.
  reset(recent) {
    this.posts = [...recent];
    this.render();
    this.onReset();
  }

  apply(event) {
    const { kind, post } = event;
    const at = this.posts.findIndex((held) => held.id === post.id);
    if (kind === "withdrawal") {
      if (at >= 0) this.posts.splice(at, 1);
    } else if (kind === "replacement" && at >= 0) {
      this.posts[at] = post;
    } else {
      if (at >= 0) this.posts.splice(at, 1);
      this.posts.push(post);
    }
    this.posts = this.posts.slice(-SHOWN);
    this.events = [...this.events, event].slice(-KEPT_EVENTS);
    this.render(kind === "withdrawal" ? null : post.id);
    for (const listener of this.listeners) listener(event);
  }

  render(fresh = null) {
    const items = this.posts
      .slice()
      .reverse()
      .map((post) => {
        const item = postItem(post, this.options);
        if (post.id === fresh) item.classList.add("new");
        return item;
      });
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
  }
}

// The posts about one seat: those the service holds (GET api/posts?constituency=), then
// every event after the seq that answer was at.
export class SeatPosts {
  constructor(section, coverage, fetchPosts) {
    this.section = section;
    this.list = section.querySelector("ol");
    this.coverage = coverage;
    this.fetchPosts = fetchPosts;
    this.seatId = null;
    this.seq = null;
    this.posts = new Map();
    coverage.listeners.add((event) => this.apply(event) && this.render());
    coverage.onReset = () => this.seatId !== null && this.show(this.seatId);
  }

  async show(seatId) {
    this.seatId = seatId;
    this.seq = null;
    this.posts = new Map();
    this.render();
    const { seq, data } = await this.fetchPosts(seatId);
    if (this.seatId !== seatId) return; // another seat was chosen meanwhile
    this.seq = seq;
    for (const post of data.posts) this.posts.set(post.id, post);
    for (const event of this.coverage.events) this.apply(event);
    this.render();
  }

  // True when the event changed this seat's posts. Events at or before the answer's seq
  // are already in it.
  apply({ seq, kind, post }) {
    if (this.seq === null || compareSeq(seq, this.seq) <= 0) return false;
    this.seq = seq;
    const about = (post.constituencies ?? []).includes(this.seatId);
    if (kind === "withdrawal" || !about) return this.posts.delete(post.id);
    // A replacement keeps its place; a new post (even under a withdrawn one's id) goes last.
    if (kind !== "replacement") this.posts.delete(post.id);
    this.posts.set(post.id, post);
    return true;
  }

  render() {
    const posts = [...this.posts.values()].reverse();
    this.section.hidden = posts.length === 0;
    this.list.replaceChildren(...posts.map((post) => postItem(post, { ...this.coverage.options, level: 5 })));
  }
}
