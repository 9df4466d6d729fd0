// What the on-air templates share: options from the query string, template data in
// (CasparCG templateData XML, or JSON: the keys of /graphics/*.json), the CasparCG globals,
// and, standalone (an OBS browser source), their own connection to /ws; start() puts one on air.

import { Live } from "../../static/live.js";

const params = new URLSearchParams(location.search);

export function option(name, fallback = null) {
  const value = params.get(name);
  return value === null || value === "" ? fallback : value;
}

export function numberOption(name, fallback, { min = 0, max = Infinity } = {}) {
  const value = Number(option(name, fallback));
  return Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : fallback;
}

// Standalone unless told `mode=casparcg`: then the data comes through update(), nothing
// shows before play(), and /ws is used only with `ws=1`.
export const casparcg = option("mode") === "casparcg";
export const standalone = option("ws", casparcg ? "0" : "1") !== "0";
export const autoplay = option("autoplay", casparcg ? "0" : "1") !== "0";

// A CSS colour from an option: "#E4003B", "E4003B" (a # is awkward in a URL) or a name;
// anything else is ignored rather than put into a style.
export function cssColour(value) {
  if (!value) return null;
  const candidate = /^[0-9a-f]{3,8}$/i.test(value) ? `#${value}` : value;
  return CSS.supports("color", candidate) ? candidate : null;
}

// `bg`, `fg` and `accent` set the panel's colours; `colours=LAB:E4003B,CON:0087DC` party ones.
export function applyColourOptions(root = document.documentElement) {
  for (const [name, property] of [["bg", "--panel"], ["fg", "--text"], ["accent", "--accent"]]) {
    const colour = cssColour(option(name));
    if (colour) root.style.setProperty(property, colour);
  }
}

export function partyColourOverrides() {
  const overrides = new Map();
  for (const pair of (option("colours") ?? "").split(",")) {
    const [code, value] = pair.split(":");
    const colour = cssColour(value?.trim());
    if (code && colour) overrides.set(code.trim(), colour);
  }
  return overrides;
}

// Template data as CasparCG sends it to update(): a templateData XML string, a JSON string,
// or (from a script) an object. Returns key -> value, or null (with a warning) when unreadable.
export function readTemplateData(data) {
  if (data !== null && typeof data === "object") return { ...data };
  const text = String(data ?? "").trim();
  if (!text) return null;
  if (text.startsWith("<")) return readXml(text);
  try {
    const value = JSON.parse(text);
    if (value !== null && typeof value === "object" && !Array.isArray(value)) return value;
  } catch {
    // reported below
  }
  console.warn("seatcast: update() data is neither templateData XML nor a JSON object");
  return null;
}

function readXml(text) {
  const document_ = new DOMParser().parseFromString(text, "application/xml");
  if (document_.querySelector("parsererror") || document_.documentElement.nodeName !== "templateData") {
    console.warn("seatcast: update() data is not templateData XML");
    return null;
  }
  const values = {};
  for (const component of document_.documentElement.children) {
    if (component.nodeName !== "componentData") continue;
    const text_ = [...component.children].find(
      (child) => child.nodeName === "data" && child.getAttribute("id") === "text",
    );
    const key = component.getAttribute("id");
    if (key && text_) values[key] = text_.getAttribute("value") ?? "";
  }
  return values;
}

// CasparCG calls these globals by name (CG PLAY, CG STOP, CG NEXT, CG UPDATE).
export function exposeToCasparCG(graphic) {
  window.play = () => graphic.play();
  window.stop = () => graphic.stop();
  window.next = () => graphic.next();
  window.update = (data) => {
    const values = readTemplateData(data);
    if (values) graphic.update(values);
  };
  window.seatcastGraphic = graphic; // for automation and tests
}

// The service's address: `server=` when the template is loaded from elsewhere (a file in
// CasparCG's template folder), else where the template came from.
function serviceUrl(path) {
  const url = new URL(path, option("server") ?? new URL("../../", location.href));
  const token = option("token");
  if (token) url.searchParams.set("token", token);
  return url;
}

export async function fetchElection() {
  try {
    const response = await fetch(serviceUrl("api/election"));
    if (response.ok) return (await response.json()).data;
  } catch {
    // shown without names and colours until a later state carries them
  }
  return { parties: {} };
}

// Follow `channel` over /ws; the connection reconnects with backoff and resumes from the
// last seq it holds (since + epoch), as the live page does.
export function follow(channel, listener) {
  const url = serviceUrl("ws");
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const live = new Live(url.href, {
    onStatus: (status) => {
      document.documentElement.dataset.connection = status;
    },
  });
  live.watch(channel, listener);
  live.start();
  return live;
}

const numbers = new Intl.NumberFormat("en-GB");

// A figure as text: numbers (or numeric text from XML) grouped, anything else as it is.
export function figure(value) {
  if (value === "" || value === null || value === undefined) return "";
  const number = Number(value);
  return Number.isFinite(number) ? numbers.format(number) : String(value);
}

export function setText(element, text) {
  element.textContent = text ?? "";
}

export const $ = (selector) => document.querySelector(selector);

// What every template does on loading, once it has made its `graphic`: the colour options
// applied; the CasparCG globals set before anything awaits (CasparCG may call update() at
// once); played unless `autoplay=0`; and standalone, `channel` followed over /ws, each
// message handed to `listener(message, election, live)` with the election's names and colours.
export async function start(graphic, channel, listener) {
  applyColourOptions();
  exposeToCasparCG(graphic);
  if (autoplay) graphic.play();
  if (!standalone) return;
  const election = await fetchElection();
  const live = follow(channel, (message) => listener(message, election, live));
}
