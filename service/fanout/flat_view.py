"""A channel as it stands, flattened (service.core.flat) for graphics systems and webhooks.

Here rather than beside the graphics routes: the runtime's webhooks need it too, and the
runtime must not import the HTTP layer that imports the runtime.
"""

from __future__ import annotations

from service.core.flat import CANDIDATE_SLOTS, Flat, flat_constituency, flat_latest, flat_national
from service.core.tally import DECLARATIONS, NATIONAL
from service.fanout.hub import Hub


def flat_document(
    hub: Hub, channel: str, *, sees_embargoed: bool = False, slots: int = CANDIDATE_SLOTS
) -> Flat:
    """The flat keys of ``channel`` as it stands: ``national``, ``declarations`` (its latest
    entry) or ``constituency:<id>``; ``sees_embargoed``: may see an embargoed exit poll."""
    tally = hub.tally
    seq = str(tally.channel_seq(channel))
    if channel == NATIONAL:
        return flat_national(tally.election, hub.public_state(NATIONAL, sees_embargoed), seq)
    if channel == DECLARATIONS:
        recent = tally.declarations()["recent"]
        return flat_latest(tally.election, recent[-1] if recent else None, seq, slots)
    return flat_constituency(tally.election, tally.state(channel), seq, slots)
