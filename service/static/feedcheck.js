// The feed's totals as a check (national.feed_check): a line under the banner saying whether
// a feed's own running totals (e.g. PA's state of the parties) agree with ours over the
// seats it covers, and each figure that does not.

import { count, plural } from "./dom.js";

const FIGURE_NAMES = { seats: "seats", gains: "gains", losses: "losses" };

export function renderFeedCheck(element, national, parties) {
  const check = national.feed_check;
  element.hidden = !check;
  if (!check) return;
  element.dataset.agrees = String(check.agrees);
  const over = `${check.source}\u2019s totals over ${plural(check.results, "result", "results")}`;
  if (check.agrees) {
    element.textContent = `\u2713 ${over} agree with ours`;
    return;
  }
  const differences = Object.entries(check.differences).flatMap(([code, figures]) =>
    Object.entries(figures).map(
      ([figure, [feeds, ours]]) =>
        `${parties[code]?.name ?? code} ${FIGURE_NAMES[figure] ?? figure} ${count(feeds)} (ours ${count(ours)})`,
    ),
  );
  element.textContent = `\u26a0 ${over} differ: ${differences.join("; ")}`;
}
