// Small DOM and formatting helpers. Text always goes in as text, never as markup: names
// come from the feed.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "style") for (const [key, v] of Object.entries(value)) element.style.setProperty(key, v);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// Text as nodes for h(), with a <wbr> every so often in a long unbroken run (a URL, or a
// hostile "AAAA…"), so that it wraps inside its panel. CSS could break it anywhere, but the
// browser then lays a 10,000-character run out in time that grows with its square.
const LONG_RUN = /\S{41,}/gu;
const graphemes = new Intl.Segmenter("en", { granularity: "grapheme" });
export function breakable(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(LONG_RUN)) {
    nodes.push(text.slice(last, match.index));
    let chunk = "";
    let length = 0;
    for (const { segment } of graphemes.segment(match[0])) {
      chunk += segment;
      if (++length === 40) {
        nodes.push(chunk, document.createElement("wbr"));
        [chunk, length] = ["", 0];
      }
    }
    nodes.push(chunk);
    last = match.index + match[0].length;
  }
  nodes.push(text.slice(last));
  return nodes.filter((node) => node !== "");
}

const numbers = new Intl.NumberFormat("en-GB");
export const count = (value) => numbers.format(value);
export const percent = (value) => `${value.toFixed(1)}%`;
export const plural = (n, one, many) => `${count(n)} ${n === 1 ? one : many}`;

export function signed(value) {
  if (value > 0) return `+${count(value)}`;
  if (value < 0) return `\u2212${count(-value)}`; // a true minus sign
  return "0";
}

export function netText(net) {
  if (net > 0) return `${plural(net, "seat", "seats")} gained`;
  if (net < 0) return `${plural(-net, "seat", "seats")} lost`;
  return "no change";
}

// Times are shown as the feed wrote them: the wall clock at the count, in the feed's own
// UTC offset, whatever the viewer's time zone (as broadcasters say them, and as the
// terminal ticker shows them).
const WALL_CLOCK = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})/;
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const NIGHT_MS = 24 * 60 * 60 * 1000;

// When the night began: the exit poll, else the earliest result the page has seen. A time
// within 24 hours of it is shown bare ("04:12": no such time is ambiguous within a day);
// a later one carries its day ("Sat 17:50"), so that a seat declared the day after the
// night does not pass for one declared in it.
export class NightClock {
  constructor() {
    this.start = null;
    this.onChange = () => {}; // the start moved: times already shown may read otherwise
  }

  begin(iso) {
    const at = iso ? Date.parse(iso) : NaN;
    if (Number.isNaN(at) || (this.start !== null && at >= this.start)) return;
    this.start = at;
    this.onChange();
  }

  // Every <time datetime> under `root`, said again.
  retime(root) {
    for (const time of root.querySelectorAll("time[datetime]")) time.textContent = this.format(time.dateTime);
  }

  format(iso) {
    if (!iso) return "";
    const at = Date.parse(iso);
    if (Number.isNaN(at)) return "";
    const wall = WALL_CLOCK.exec(iso);
    const when = new Date(at);
    const time = wall ? `${wall[4]}:${wall[5]}` : when.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
    if (this.start !== null && at >= this.start && at - this.start < NIGHT_MS) return time;
    const weekday = wall ? new Date(Date.UTC(+wall[1], +wall[2] - 1, +wall[3])).getUTCDay() : when.getDay();
    return `${WEEKDAYS[weekday]} ${time}`;
  }
}

// Black or white, whichever reads better on the party's colour (WCAG relative luminance).
export function inkOn(colour) {
  const match = /^#?([0-9a-f]{6})$/i.exec(colour ?? "");
  if (!match) return "#fff";
  const channel = (offset) => {
    const c = parseInt(match[1].slice(offset, offset + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
  return luminance > 0.22 ? "#0b1020" : "#fff";
}

// Folded for matching: lower case, accents dropped ("Ynys Môn" matches "ynys mon").
export function fold(text) {
  return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
}
