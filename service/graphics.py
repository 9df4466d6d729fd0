"""``/graphics/``: the state flattened for graphics systems that poll, and the templates.

``/graphics/national.{json,xml,csv}``, ``/graphics/constituency/{id}.{fmt}`` and
``/graphics/latest.{fmt}`` (the latest declarations entry) answer with the keys of
service.core.flat as a JSON object, CasparCG ``templateData`` XML or ``key,value`` CSV.
Access, embargo and caching are the REST API's; ``?token=`` serves systems that cannot set
a header. ``/graphics/templates/`` serves the HTML templates.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from service.access import Grant
from service.caching import conditional, entity_tag
from service.core.flat import CANDIDATE_SLOTS, Flat
from service.core.tally import DECLARATIONS, NATIONAL, constituency_channel
from service.fanout.flat_view import flat_document
from service.http import channel_grant, error_response, withheld

if TYPE_CHECKING:
    from service.runtime import Runtime

TEMPLATES = Path(__file__).parent / "static" / "graphics"
MAX_SLOTS = 50

# XML 1.0 forbids most control characters even as references: a name holding one would
# make the whole document unreadable, so each is shown as U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def render_json(flat: Flat) -> Response:
    return Response(orjson.dumps(flat), media_type="application/json")


def render_xml(flat: Flat) -> Response:
    """CasparCG's template data: ``<componentData id="KEY"><data id="text" value=".."/>``."""
    root = ET.Element("templateData")
    for key, value in flat.items():
        component = ET.SubElement(root, "componentData", id=_xml_text(key))
        ET.SubElement(component, "data", id="text", value=_xml_text(_text(value)))
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type="application/xml")


def render_csv(flat: Flat) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("key", "value"))
    writer.writerows((key, _text(value)) for key, value in flat.items())
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")


RENDERERS: dict[str, Callable[[Flat], Response]] = {
    "json": render_json,
    "xml": render_xml,
    "csv": render_csv,
}


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _gate(request: Request, channel: str, what: str) -> Grant | Response:
    """The caller's grant for ``channel``, or the error answer (the REST API's own)."""
    if request.path_params["format"] not in RENDERERS:
        return error_response(404, "not_found", "no such format: ask for .json, .xml or .csv")
    return channel_grant(request, channel, what)


def _slots(request: Request) -> int | Response:
    raw = request.query_params.get("candidates", str(CANDIDATE_SLOTS))
    if not raw.isdigit() or not 0 <= int(raw) <= MAX_SLOTS:
        return error_response(
            400, "bad_request", f"'candidates' must be a number from 0 to {MAX_SLOTS}"
        )
    return int(raw)


def _answer(
    request: Request, channel: str, what: str, flatten: Callable[[Grant], Flat]
) -> Response:
    grant = _gate(request, channel, what)
    if isinstance(grant, Response):
        return grant
    runtime = _runtime(request)
    tag = entity_tag(
        runtime.hub.epoch,
        runtime.tally.channel_seq(channel),
        withheld=withheld(runtime, channel, grant),
    )
    render = RENDERERS[request.path_params["format"]]
    return conditional(request, tag, runtime.settings.cache_control, lambda: render(flatten(grant)))


async def national(request: Request) -> Response:
    def flatten(grant: Grant) -> Flat:
        return flat_document(_runtime(request).hub, NATIONAL, sees_embargoed=grant.sees_embargoed)

    return _answer(request, NATIONAL, "channel", flatten)


async def constituency(request: Request) -> Response:
    seat_id = request.path_params["id"]
    channel = constituency_channel(seat_id)
    slots = _slots(request)
    if isinstance(slots, Response):
        return slots

    def flatten(grant: Grant) -> Flat:
        return flat_document(_runtime(request).hub, channel, slots=slots)

    return _answer(request, channel, f"constituency {seat_id!r}", flatten)


async def latest(request: Request) -> Response:
    slots = _slots(request)
    if isinstance(slots, Response):
        return slots

    def flatten(grant: Grant) -> Flat:
        return flat_document(_runtime(request).hub, DECLARATIONS, slots=slots)

    return _answer(request, DECLARATIONS, "channel", flatten)


def routes() -> list[BaseRoute]:
    """Mounted at ``/graphics`` by create_app."""
    return [
        Route("/national.{format}", national),
        Route("/constituency/{id}.{format}", constituency),
        Route("/latest.{format}", latest),
        Mount("/templates", StaticFiles(directory=TEMPLATES, html=True, check_dir=False)),
    ]
