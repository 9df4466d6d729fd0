// Search-as-you-type for a constituency: the ARIA 1.2 combobox pattern with a listbox popup.
// Focus stays in the input; the highlighted option is named by aria-activedescendant.
// Keys: Down/Up move (Down opens), Enter chooses, Escape closes (then clears).

import { fold, h } from "./dom.js";

const MAX_OPTIONS = 8;

export class SeatSearch {
  constructor(input, listbox, onChoose) {
    this.input = input;
    this.listbox = listbox;
    this.onChoose = onChoose;
    this.seats = [];
    this.matches = [];
    this.active = -1;
    input.addEventListener("input", () => this.update());
    input.addEventListener("keydown", (event) => this.key(event));
    input.addEventListener("blur", () => this.close());
    // mousedown, not click: choosing must happen before the input's blur closes the list.
    listbox.addEventListener("mousedown", (event) => {
      const option = event.target.closest("[role=option]");
      if (!option) return;
      event.preventDefault();
      this.choose(Number(option.dataset.index));
    });
  }

  // seats: [{id, name, region, nation}]
  setSeats(seats) {
    this.seats = seats.map((seat) => ({ ...seat, key: fold(seat.name) }));
    if (document.activeElement === this.input && this.input.value) this.update();
  }

  find(query) {
    const wanted = fold(query.trim());
    if (!wanted) return [];
    // Names that start with the query first, then a word that does, then anywhere.
    const rank = (seat) => {
      if (seat.key.startsWith(wanted)) return 0;
      if (seat.key.includes(` ${wanted}`) || seat.key.includes(`-${wanted}`)) return 1;
      return seat.key.includes(wanted) ? 2 : -1;
    };
    return this.seats
      .map((seat) => [rank(seat), seat])
      .filter(([r]) => r >= 0)
      .sort(([a, s], [b, t]) => a - b || s.name.localeCompare(t.name))
      .slice(0, MAX_OPTIONS)
      .map(([, seat]) => seat);
  }

  update() {
    this.matches = this.find(this.input.value);
    this.active = -1;
    this.listbox.replaceChildren(
      ...this.matches.map((seat, index) =>
        h(
          "li",
          { role: "option", id: `seat-option-${index}`, "data-index": index, "data-id": seat.id, "aria-selected": "false" },
          h("span", { class: "option-name" }, seat.name),
          h("span", { class: "option-where" }, seat.region),
        ),
      ),
    );
    if (this.input.value.trim() && !this.matches.length) {
      this.listbox.append(h("li", { class: "no-match", "aria-disabled": "true" }, "No constituency matches"));
    }
    this.setOpen(this.listbox.children.length > 0);
    this.highlight(-1);
  }

  key(event) {
    const open = !this.listbox.hidden;
    switch (event.key) {
      case "ArrowDown":
        event.preventDefault();
        if (!open) this.update();
        this.highlight(Math.min(this.active + 1, this.matches.length - 1));
        break;
      case "ArrowUp":
        event.preventDefault();
        if (open) this.highlight(Math.max(this.active - 1, 0));
        break;
      case "Enter":
        if (open && this.matches.length) {
          event.preventDefault();
          this.choose(this.active >= 0 ? this.active : 0);
        }
        break;
      case "Escape":
        if (open) this.close();
        else this.input.value = "";
        break;
      default:
    }
  }

  highlight(index) {
    this.active = index;
    for (const option of this.listbox.querySelectorAll("[role=option]")) {
      const on = Number(option.dataset.index) === index;
      option.setAttribute("aria-selected", String(on));
      if (on) option.scrollIntoView({ block: "nearest" });
    }
    if (index >= 0) this.input.setAttribute("aria-activedescendant", `seat-option-${index}`);
    else this.input.removeAttribute("aria-activedescendant");
  }

  choose(index) {
    const seat = this.matches[index];
    if (!seat) return;
    this.input.value = seat.name;
    this.close();
    this.onChoose(seat);
  }

  close() {
    this.setOpen(false);
    this.highlight(-1);
  }

  setOpen(open) {
    this.listbox.hidden = !open;
    this.input.setAttribute("aria-expanded", String(open));
  }
}
