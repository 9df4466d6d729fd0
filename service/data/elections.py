"""What the build knows of the three bundled elections that the Library's files do not say:
the parties (names, colours and the codes feeds use for them), each election's name, source,
exit poll and timing, and the seats that do not vote. Kept apart from service.data.build,
which reads the files, so that a new election is added here.
"""

from __future__ import annotations

from dataclasses import dataclass

ATTRIBUTION = "Contains Parliamentary information licensed under the Open Parliament Licence v3.0."

# Party code -> (display name, colour). The order here is the order of "parties" in the output.
PARTIES: dict[str, tuple[str, str]] = {
    "LAB": ("Labour", "#E4003B"),
    "CON": ("Conservative", "#0087DC"),
    "LD": ("Liberal Democrat", "#FAA61A"),
    "SNP": ("Scottish National Party", "#FDF38E"),
    "PC": ("Plaid Cymru", "#005B54"),
    "GRN": ("Green", "#02A95B"),
    "RUK": ("Reform UK", "#12B6CF"),
    "BRX": ("Brexit Party", "#12B6CF"),
    "UKIP": ("UK Independence Party", "#6D3177"),
    "SF": ("Sinn Féin", "#326760"),
    "DUP": ("Democratic Unionist Party", "#D46A4C"),
    "SDLP": ("Social Democratic and Labour Party", "#2AA82C"),
    "APNI": ("Alliance", "#F6CB2F"),
    "UUP": ("Ulster Unionist Party", "#48A5EE"),
    "TUV": ("Traditional Unionist Voice", "#0C3A6A"),
    "SPK": ("Speaker", "#909090"),
    "IND": ("Independent", "#DDDDDD"),
    "OTH": ("Other", "#AAAAAA"),
}

# The Speaker and three deputies do not vote; Sinn Féin's members do not take their seats.
NON_VOTING_SEATS = 4
ABSTAINING_PARTIES = ("SF",)

# 2024 rows whose declaration_time_alt is clearly wrong (about 17:20 on Friday, while the Library
# recorded them in the early morning): use declaration_time for these, as shared/data/README.md
# advises.
BAD_ALT_TIMES_2024 = frozenset(
    {
        "E14001393",  # North East Hertfordshire: alt 17:23, Library 05:43
        "E14001289",  # Hitchin: alt 17:22, Library 05:52
        "E14001202",  # Dover and Deal: alt 17:20, Library 06:45
    }
)


@dataclass(frozen=True)
class Year:
    """What differs between the three bundled elections."""

    year: int
    name: str
    source: str
    exit_poll: dict[str, int]
    exit_poll_published_at: str
    use_alt_times: bool


YEARS: tuple[Year, ...] = (
    Year(
        year=2024,
        name="UK general election, 4 July 2024",
        source=(
            "House of Commons Library research briefing CBP-10009, General election 2024 "
            "results (revised constituency and candidate files); previous winners are the "
            "Library's notional 2019 results on the 2024 boundaries"
        ),
        exit_poll={
            "LAB": 410,
            "CON": 131,
            "LD": 61,
            "RUK": 13,
            "SNP": 10,
            "PC": 4,
            "GRN": 2,
            "OTH": 19,
        },
        exit_poll_published_at="2024-07-04T22:00:00+01:00",
        use_alt_times=True,
    ),
    Year(
        year=2019,
        name="UK general election, 12 December 2019",
        source=(
            "House of Commons Library research briefing CBP-8749, General election 2019 "
            "results (constituency and candidate files)"
        ),
        exit_poll={
            "CON": 368,
            "LAB": 191,
            "SNP": 55,
            "LD": 13,
            "PC": 3,
            "GRN": 1,
            "BRX": 0,
            "OTH": 19,
        },
        exit_poll_published_at="2019-12-12T22:00:00+00:00",
        use_alt_times=False,
    ),
    Year(
        year=2017,
        name="UK general election, 8 June 2017",
        source=(
            "House of Commons Library research briefing CBP-7979, General election 2017 "
            "results (constituency and candidate files)"
        ),
        exit_poll={
            "CON": 314,
            "LAB": 266,
            "SNP": 34,
            "LD": 14,
            "PC": 3,
            "GRN": 1,
            "UKIP": 0,
            "OTH": 18,
        },
        exit_poll_published_at="2017-06-08T22:00:00+01:00",
        use_alt_times=False,
    ),
)

# Party code -> the other codes feeds use for it: PA Media's abbreviations where they differ
# from ours (PA's LD, SNP, PC, UKIP, SF, DUP, SDLP, UUP and TUV are the same as ours).
ALIASES: dict[str, tuple[str, ...]] = {
    "LAB": ("Lab",),
    "CON": ("C",),
    "GRN": ("Green",),
    "RUK": ("Reform",),
    "APNI": ("Alliance",),
    "SPK": ("Speaker",),
    "IND": ("Ind",),
}

# Parties that a feed names and the definition does not list are counted under this one.
OTHER_PARTY = "OTH"
