"""The record of entries read, which decides whether a ``since`` names an entry at all."""

from __future__ import annotations

import pytest

from service.core.seq import Entries, Seq


def test_entries_know_each_recorded_seq_and_nothing_between_them() -> None:
    entries = Entries()
    for seq in (Seq(10, 0), Seq(10, 1), Seq(10, 5), Seq(12, 0)):
        entries.add(seq)
    assert len(entries) == 4
    assert [Seq(10, 0), Seq(10, 1), Seq(10, 5), Seq(12, 0)] == [
        s for s in (Seq(10, 0), Seq(10, 1), Seq(10, 5), Seq(12, 0)) if s in entries
    ]
    for missing in (Seq(0, 0), Seq(10, 2), Seq(11, 0), Seq(12, 1), Seq(99, 0)):
        assert missing not in entries
    assert "10-0" not in entries  # text is not a seq


@pytest.mark.parametrize("seq", [Seq(12, 0), Seq(11, 9)])
def test_an_entry_not_after_the_last_is_refused(seq: Seq) -> None:
    entries = Entries()
    entries.add(Seq(12, 0))
    with pytest.raises(ValueError, match="not after"):
        entries.add(seq)
