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

export function clock(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  return when.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
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
