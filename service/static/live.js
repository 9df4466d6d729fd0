// The live side of the page: one connection to /ws, the channels the views watch, each
// channel's state and seq, gap detection by `prev`, and resuming after a reconnect. Where the
// websocket cannot open (a proxy refuses the upgrade), the same messages come over
// Server-Sent Events from /sse instead, through the same handlers.

import { applyMergePatch } from "./merge.js";

const BACKOFF_START_MS = 500;
const BACKOFF_CAP_MS = 5000;
const HEARTBEAT_MS = 15000; // an app-level ping: the browser hides the server's own pings
const PONG_WAIT_MS = 10000;
const RESYNCED_SHOW_MS = 6000;
// Websocket attempts in a row that end before the hello: then the page follows over SSE.
const FALLBACK_AFTER = 3;
const MESSAGE_TYPES = ["hello", "snapshot", "resumed", "delta", "event", "error"];

// Stream entry IDs ("1720148400000-0") compared as numbers, never as text.
export function compareSeq(a, b) {
  const [am, an] = a.split("-").map(Number);
  const [bm, bn] = b.split("-").map(Number);
  return am - bm || an - bn;
}

// `onStatus(status, detail)` hears "connecting", "live", "reconnecting" and "resynced";
// `transport` says how: "websocket", or "sse" once the websocket has failed to open.
export class Live {
  constructor(url, { onStatus = () => {}, streamUrl = null } = {}) {
    this.url = url;
    this.streamUrl = streamUrl; // /sse, without channels: null for no fallback
    this.transport = "websocket";
    this.failedOpens = 0;
    this.source = null; // the EventSource, over SSE
    this.lastEventId = null;
    this.onStatus = onStatus;
    this.channels = new Map(); // channel -> { seq, state, listener, waiting }
    this.epoch = null;
    this.socket = null;
    this.attempt = 0;
    this.everConnected = false;
    this.reconnecting = false;
    this.helloSeen = false;
    this.pingId = 0;
    this.timers = {};
  }

  start() {
    this.status("connecting");
    this.connect();
  }

  // listener({type, channel, seq, state, data}): `state` after a snapshot or delta on a
  // state channel; `data` for a declarations snapshot ({recent}) or event.
  watch(channel, listener) {
    this.channels.set(channel, { seq: null, state: undefined, listener, waiting: true });
    this.send({ op: "subscribe", channels: [channel] });
    this.changedChannels();
  }

  unwatch(channel) {
    if (this.channels.delete(channel)) {
      this.send({ op: "unsubscribe", channels: [channel] });
      this.changedChannels();
    }
  }

  send(request) {
    if (this.transport === "sse") return; // an event stream takes no requests
    if (this.socket && this.socket.readyState === WebSocket.OPEN && this.helloSeen) {
      this.socket.send(JSON.stringify(request));
    }
  }

  connect() {
    if (this.transport === "sse") return this.openStream({ resume: true });
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.helloSeen = false;
    socket.onmessage = (frame) => this.receive(JSON.parse(frame.data));
    socket.onclose = () => this.dropped(socket);
  }

  dropped(socket) {
    if (this.socket !== socket) return;
    clearInterval(this.timers.heartbeat);
    clearTimeout(this.timers.pong);
    this.timers.pong = null;
    this.socket = null;
    this.failedOpens = this.helloSeen ? 0 : this.failedOpens + 1;
    this.helloSeen = false;
    this.reconnecting = true;
    if (this.streamUrl && this.failedOpens >= FALLBACK_AFTER) {
      // Refused, or closed before a word, again and again: a proxy on the way blocks
      // websockets. Plain HTTP gets through it.
      this.transport = "sse";
      this.status(this.everConnected ? "reconnecting" : "connecting");
      return this.openStream({ resume: true });
    }
    this.retryLater(() => this.connect());
  }

  retryLater(connect) {
    // Jittered, capped exponential backoff: many pages reconnecting after a restart must
    // not all arrive at once.
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.status("reconnecting", { retryInMs: Math.round(delay) });
    clearTimeout(this.timers.retry);
    this.timers.retry = setTimeout(connect, delay);
  }

  // --- Server-Sent Events: the channels go in the URL and are answered unasked --------------

  // `resume`: from the last event id, which stands for every channel, when each has a state
  // to resume; otherwise (a channel just added) every channel is sent afresh.
  openStream({ resume = false, from = null } = {}) {
    if (this.source) this.source.close();
    clearTimeout(this.timers.retry);
    const url = new URL(this.streamUrl);
    url.searchParams.set("channels", [...this.channels.keys()].join(","));
    const whole = [...this.channels.values()].every((entry) => entry.seq !== null);
    const since = from ?? (resume && whole ? this.lastEventId : null);
    if (since) url.searchParams.set("last_event_id", since);
    const source = new EventSource(url.href);
    this.source = source;
    this.helloSeen = false;
    source.onopen = () => {
      if (this.source !== source) return;
      // Opened, or opened again by the browser after a drop (with its own Last-Event-ID).
      this.helloSeen = false;
      for (const entry of this.channels.values()) entry.waiting = true;
    };
    for (const type of MESSAGE_TYPES) {
      source.addEventListener(type, (event) => {
        if (this.source !== source) return;
        if (event.data === undefined) return this.streamFailed(source); // not a message
        if (event.lastEventId) this.lastEventId = event.lastEventId;
        this.receive(JSON.parse(event.data));
      });
    }
  }

  streamFailed(source) {
    if (this.everConnected) this.reconnecting = true;
    if (source.readyState === EventSource.CONNECTING) {
      this.status("reconnecting"); // the browser tries again by itself
      return;
    }
    // Refused outright (an HTTP error): the browser gives up, so the page tries again.
    source.close();
    this.retryLater(() => this.openStream({ resume: true }));
  }

  // Over SSE the channels are in the URL: a change opens the stream again, once for all the
  // changes made together.
  changedChannels() {
    if (this.transport !== "sse" || this.timers.reopen) return;
    this.timers.reopen = setTimeout(() => {
      this.timers.reopen = null;
      this.openStream();
    }, 0);
  }

  receive(message) {
    const handler = this.handlers[message.type];
    if (handler) handler.call(this, message);
  }

  handlers = {
    hello(message) {
      const previousEpoch = this.epoch;
      this.epoch = message.epoch;
      if (this.helloSeen) {
        // The stream was begun again: the server sends fresh snapshots by itself.
        for (const entry of this.channels.values()) Object.assign(entry, { seq: null, waiting: true });
        this.reconnecting = true;
        return;
      }
      this.helloSeen = true;
      this.attempt = 0;
      if (this.transport === "sse") return; // the answers for every channel follow unasked
      this.startHeartbeat();
      if (this.channels.size === 0) return this.settled();
      // Ask to resume from what we hold, naming the epoch it came from; the server answers
      // `resumed` where it can and a snapshot where it cannot (another epoch, say).
      const since = {};
      for (const [channel, entry] of this.channels) {
        entry.waiting = true;
        if (entry.seq !== null && previousEpoch !== null) since[channel] = entry.seq;
      }
      const request = { op: "subscribe", channels: [...this.channels.keys()] };
      if (Object.keys(since).length) Object.assign(request, { since, epoch: previousEpoch });
      this.send(request);
    },

    snapshot(message) {
      const entry = this.channels.get(message.channel);
      if (!entry) return;
      Object.assign(entry, { seq: message.seq, state: message.data, waiting: false });
      entry.listener({ type: "snapshot", channel: message.channel, seq: message.seq, state: message.data, data: message.data });
      this.settled();
    },

    resumed(message) {
      const entry = this.channels.get(message.channel);
      if (!entry) return;
      if (entry.seq === null) return this.openStream(); // nothing to resume: start afresh
      entry.waiting = false; // the missed deltas follow, chained from entry.seq
      this.settled();
    },

    delta(message) {
      const entry = this.follows(message);
      if (!entry) return;
      entry.state = applyMergePatch(entry.state, message.patch);
      entry.listener({ type: "delta", channel: message.channel, seq: message.seq, state: entry.state });
    },

    event(message) {
      const entry = this.follows(message);
      if (!entry) return;
      entry.listener({ type: "event", channel: message.channel, seq: message.seq, data: message.data });
    },

    error(message) {
      console.warn(`seatcast: ${message.code}: ${message.message}`);
    },

    pong() {
      clearTimeout(this.timers.pong);
      this.timers.pong = null;
    },
  };

  // The channel's entry when the message continues its chain; otherwise null, and a
  // missed message makes the page ask again from the last seq it holds.
  follows(message) {
    const entry = this.channels.get(message.channel);
    if (!entry || entry.waiting || entry.seq === null) return null;
    if (compareSeq(message.seq, entry.seq) <= 0) return null; // already applied
    if (message.prev !== entry.seq) {
      entry.waiting = true;
      // Over SSE, open the stream again from the last seq this channel holds; the others
      // pass over what they already hold.
      if (this.transport === "sse") this.openStream({ from: `${this.epoch}:${entry.seq}` });
      this.send({
        op: "subscribe",
        channels: [message.channel],
        since: { [message.channel]: entry.seq },
        epoch: this.epoch,
      });
      return null;
    }
    entry.seq = message.seq;
    return entry;
  }

  settled() {
    if ([...this.channels.values()].some((entry) => entry.waiting)) return;
    if (!this.reconnecting || !this.everConnected) {
      // The first time in (even after failed attempts) is simply live.
      if (!this.everConnected) this.status("live");
      this.everConnected = true;
      this.reconnecting = false;
      return;
    }
    this.reconnecting = false;
    this.status("resynced");
    clearTimeout(this.timers.resynced);
    this.timers.resynced = setTimeout(() => {
      if (!this.reconnecting && this.socket) this.status("live");
    }, RESYNCED_SHOW_MS);
  }

  startHeartbeat() {
    clearInterval(this.timers.heartbeat);
    this.timers.heartbeat = setInterval(() => {
      if (this.timers.pong) return; // the last ping is still unanswered
      this.pingId += 1;
      this.send({ op: "ping", id: this.pingId });
      const socket = this.socket;
      // No answer in time: the connection is dead though no close arrived.
      this.timers.pong = setTimeout(() => {
        this.dropped(socket);
        socket.close();
      }, PONG_WAIT_MS);
    }, HEARTBEAT_MS);
  }

  status(status, detail = {}) {
    this.current = status;
    this.onStatus(status, detail);
  }
}
