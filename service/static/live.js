// The websocket side of the page: one connection to /ws, the channels the views watch,
// each channel's state and seq, gap detection by `prev`, and resuming after a reconnect.

import { applyMergePatch } from "./merge.js";

const BACKOFF_START_MS = 500;
const BACKOFF_CAP_MS = 5000;
const HEARTBEAT_MS = 15000; // an app-level ping: the browser hides the server's own pings
const PONG_WAIT_MS = 10000;
const RESYNCED_SHOW_MS = 6000;

// Stream entry IDs ("1720148400000-0") compared as numbers, never as text.
export function compareSeq(a, b) {
  const [am, an] = a.split("-").map(Number);
  const [bm, bn] = b.split("-").map(Number);
  return am - bm || an - bn;
}

// `onStatus(status, detail)` hears "connecting", "live", "reconnecting" and "resynced".
export class Live {
  constructor(url, { onStatus = () => {} } = {}) {
    this.url = url;
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
  }

  unwatch(channel) {
    if (this.channels.delete(channel)) this.send({ op: "unsubscribe", channels: [channel] });
  }

  send(request) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN && this.helloSeen) {
      this.socket.send(JSON.stringify(request));
    }
  }

  connect() {
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
    this.helloSeen = false;
    this.reconnecting = true;
    // Jittered, capped exponential backoff: many pages reconnecting after a restart must
    // not all arrive at once.
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.status("reconnecting", { retryInMs: Math.round(delay) });
    this.timers.retry = setTimeout(() => this.connect(), delay);
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
