// Which parties the banner shows on their own, which fold into "Others", and where the
// Speaker counts. The service reports every party as it is; grouping is a display choice,
// made here from the page's URL:
//   ?parties=LAB,CON,LD,SNP,SF   the parties shown on their own, in this order
//   &speaker=LAB                  count the Speaker's seat with this party ("none": don't)
// The defaults reproduce how UK broadcasters showed 2024. With a definition that has none
// of those parties, every party stands alone.

const DEFAULT_PARTIES = ["LAB", "CON", "LD", "SNP", "SF"];
const DEFAULT_SPEAKER_WITH = "LAB";
export const OTHERS = "others"; // not a party code: "OTH" is one in the UK definitions
const OTHERS_COLOUR = "#8a93a6";

function codes(text) {
  return text
    .split(",")
    .map((code) => code.trim())
    .filter(Boolean);
}

function speakerCode(parties) {
  if ("SPK" in parties) return "SPK";
  return Object.keys(parties).find((code) => parties[code].name === "Speaker") ?? null;
}

// -> {groups: [{key, name, colour, codes, note}], speaker: {code, with} | null}
export function grouping(params, parties) {
  const asked = params.has("parties") ? codes(params.get("parties")) : DEFAULT_PARTIES;
  let alone = asked.filter((code) => code in parties);
  if (alone.length === 0 && !params.has("parties")) alone = Object.keys(parties);
  const speaker = speakerCode(parties);
  const speakerWith = params.has("speaker") ? params.get("speaker").trim() : DEFAULT_SPEAKER_WITH;
  const folds = speaker && speaker !== speakerWith && alone.includes(speakerWith) && !alone.includes(speaker);

  const groups = alone.map((code) => ({
    key: code,
    name: parties[code].name,
    colour: parties[code].colour ?? OTHERS_COLOUR,
    codes: folds && code === speakerWith ? [code, speaker] : [code],
    note: folds && code === speakerWith ? `includes the ${parties[speaker].name}` : "",
  }));
  const grouped = new Set(groups.flatMap((group) => group.codes));
  const rest = Object.keys(parties).filter((code) => !grouped.has(code));
  if (rest.length) {
    groups.push({ key: OTHERS, name: "Others", colour: OTHERS_COLOUR, codes: rest, note: "" });
  }
  return { groups, speaker: folds ? { code: speaker, with: speakerWith } : null };
}

// A group's totals from the national state's parties (or an exit poll's seats).
export function groupTotals(group, parties) {
  const totals = { seats: 0, net: 0, votes: 0 };
  for (const code of group.codes) {
    const party = parties[code];
    if (!party) continue;
    totals.seats += party.seats ?? 0;
    totals.net += party.net ?? 0;
    totals.votes += party.votes ?? 0;
  }
  return totals;
}
