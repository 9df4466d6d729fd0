"""The AsyncAPI document: well formed, served, and true of real messages from a replay."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT7

from service import http as service_http
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, Client, RunningService, connect, xadd

DOCUMENT_URI = "urn:seatcast:asyncapi"
SERVER_TYPES = {"hello", "snapshot", "resumed", "delta", "event", "error", "pong"}
CLIENT_OPS = {"subscribe", "unsubscribe", "ping"}


def load_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(Path(service_http.ASYNCAPI).read_text())
    return document


class Contract:
    """The document's message payload schemas, by server ``type`` and by client ``op``."""

    def __init__(self, document: dict[str, Any]) -> None:
        registry: Registry[Any] = Registry().with_resource(
            DOCUMENT_URI, DRAFT7.create_resource(document)
        )
        self.by_type: dict[str, Draft7Validator] = {}
        self.by_op: dict[str, Draft7Validator] = {}
        for name, message in document["components"]["messages"].items():
            payload = resolve(document, message["payload"]["$ref"])
            validator = Draft7Validator(
                {"$ref": f"{DOCUMENT_URI}#/components/messages/{name}/payload"},
                registry=registry,
            )
            properties = payload["properties"]
            if "type" in properties:
                self.by_type[properties["type"]["const"]] = validator
            else:
                self.by_op[properties["op"]["const"]] = validator

    def check(self, message: dict[str, Any]) -> None:
        """Raise ValidationError unless the message fits its type's schema."""
        if "op" in message:
            self.by_op[message["op"]].validate(message)
        else:
            self.by_type[message["type"]].validate(message)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return load_document()


@pytest.fixture(scope="module")
def contract(document: dict[str, Any]) -> Contract:
    return Contract(document)


def test_the_document_is_asyncapi_3_and_every_reference_resolves(
    document: dict[str, Any],
) -> None:
    assert str(document["asyncapi"]).startswith("3.0.")
    assert document["channels"]["live"]["address"] == "/ws"
    for ref in references(document):
        resolve(document, ref)
    for name, schema in document["components"]["schemas"].items():
        assert isinstance(schema, dict), name
        Draft7Validator.check_schema(schema)
    actions = {op["action"] for op in document["operations"].values()}
    assert actions == {"send", "receive"}


def test_every_message_type_and_op_has_a_schema(contract: Contract) -> None:
    assert set(contract.by_type) == SERVER_TYPES
    assert set(contract.by_op) == CLIENT_OPS


async def test_the_document_is_served(service: RunningService, document: dict[str, Any]) -> None:
    response = await service.get("/asyncapi.yaml")
    assert response.status_code == 200
    assert "yaml" in response.headers["content-type"]
    assert yaml.safe_load(response.text) == document


FIRST_SEAT = "E14001295"  # Houghton and Sunderland South: the night's first declaration
SECOND_SEAT = "E14001107"
UNDECLARED_SEAT = "E14001425"  # Peterborough: declared much later in the night
CHANNELS = (
    "national",
    "declarations",
    "posts",
    f"constituency:{FIRST_SEAT}",
    f"constituency:{UNDECLARED_SEAT}",
    "region:north-east",
    "nation:england",
    "nation:scotland",
)


def extra_events() -> list[dict[str, Any]]:
    """A flash, a correction and a retraction: patches that remove fields, and every kind;
    a feed's totals that disagree with ours, then ones that agree; posts, a replacement and
    a withdrawal."""
    first = orjson.loads(NIGHT_2024[1])
    corrected = {**first, "candidates": [dict(c) for c in first["candidates"]]}
    corrected["candidates"][0]["votes"] += 10
    feed = {"type": "state_of_parties", "source": "PA", "constituencies": [FIRST_SEAT]}
    return [
        feed | {"parties": {"CON": {"seats": 1, "gains": 1, "losses": 0}}},
        feed | {"parties": {"LAB": {"seats": 1, "gains": 0, "losses": 0}}},
        {"type": "flash", "constituency": UNDECLARED_SEAT, "winner": {"name": "A", "party": "LAB"}},
        corrected,
        {"type": "retraction", "constituency": FIRST_SEAT, "reason": "declared in error"},
        {"type": "retraction", "constituency": UNDECLARED_SEAT},
        {
            "type": "post",
            "id": "p1",
            "title": "What were the key issues in Peterborough?",
            "body": "Housing.\n\nAnd <b>the</b> cost of living.",
            "author": "Ana Ruiz",
            "role": "Political correspondent",
            "constituencies": [UNDECLARED_SEAT],
        },
        {"type": "post", "id": "p2", "title": "Turnout", "body": "Down on 2019."},
        {"type": "post", "id": "p1", "title": "Key issues", "body": "Housing."},
        {"type": "post", "id": "p2", "withdrawn": True},
        {"type": "exit_poll", "seats": {"LAB": 400, "CON": 140}},
    ]


async def sent(client: Client, contract: Contract, request: dict[str, Any]) -> None:
    contract.check(request)
    await client.send(request)


async def test_real_messages_from_a_replay_fit_the_schemas(
    service: RunningService, redis: aioredis.Redis, contract: Contract
) -> None:
    received: list[dict[str, Any]] = []
    stream = service.settings.stream

    async def receive(client: Client) -> dict[str, Any]:
        message = await client.receive()
        received.append(message)
        return message

    async with connect(service) as client:
        hello = await receive(client)
        await sent(client, contract, {"op": "subscribe", "channels": list(CHANNELS)})
        for _ in CHANNELS:
            assert (await receive(client))["type"] == "snapshot"
        ids = await xadd(redis, stream, *NIGHT_2024[:60], *extra_events())
        national_seq = ""
        async with asyncio.timeout(TIMEOUT):
            while national_seq != ids[-1]:
                message = await receive(client)
                if message["channel"] == "national":
                    national_seq = message["seq"]
        await client.connection.send("{not json")
        assert (await receive(client))["type"] == "error"
        await sent(client, contract, {"op": "subscribe", "channels": ["region:atlantis"]})
        assert (await receive(client))["code"] == "unknown_channel"
        await sent(client, contract, {"op": "ping", "id": "p1"})
        assert await receive(client) == {"type": "pong", "id": "p1"}
        await sent(client, contract, {"op": "unsubscribe", "channels": ["nation:scotland"]})
        # Snapshots of every channel now, with results in them.
        await sent(client, contract, {"op": "subscribe", "channels": list(CHANNELS)})
        for _ in CHANNELS:
            assert (await receive(client))["type"] == "snapshot"

    async with connect(service) as client:
        hello = await receive(client)
        since = {"national": ids[30], "declarations": ids[30]}
        await sent(
            client,
            contract,
            {
                "op": "subscribe",
                "channels": ["national", "declarations"],
                "since": since,
                "epoch": hello["epoch"],
            },
        )
        # Each channel answers resumed, then what it missed: national up to the exit poll,
        # the declarations log up to the last retraction.
        last = {"national": "", "declarations": ""}
        resumed = 0
        async with asyncio.timeout(TIMEOUT):
            while resumed < 2 or last != {"national": ids[-1], "declarations": ids[-6]}:
                message = await receive(client)
                if message["type"] == "resumed":
                    resumed += 1
                else:
                    last[message["channel"]] = message["seq"]

    seen = {message["type"] for message in received}
    assert seen == SERVER_TYPES
    kinds = {(m["channel"], m["data"]["kind"]) for m in received if m["type"] == "event"}
    assert kinds == {
        ("declarations", "declaration"),
        ("declarations", "flash"),
        ("declarations", "correction"),
        ("declarations", "retraction"),
        ("posts", "post"),
        ("posts", "replacement"),
        ("posts", "withdrawal"),
    }
    for message in received:
        try:
            contract.check(message)
        except ValidationError as exc:
            raise AssertionError(f"{message['type']} does not fit: {exc.message}") from exc


async def test_rest_states_fit_the_state_schemas(
    service: RunningService, redis: aioredis.Redis, document: dict[str, Any]
) -> None:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:30])
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, DRAFT7.create_resource(document)
    )

    def validator(name: str) -> Draft7Validator:
        ref = f"{DOCUMENT_URI}#/components/schemas/{name}"
        return Draft7Validator({"$ref": ref}, registry=registry)

    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/api/national")).json()["seq"] != ids[-1]:
            await asyncio.sleep(0.02)
    validator("NationalState").validate((await service.get("/api/national")).json()["data"])
    validator("AreaState").validate((await service.get("/api/regions/north-east")).json()["data"])
    seats = (await service.get("/api/constituencies")).json()["data"]
    for seat in seats.values():
        validator("ConstituencyState").validate(seat)
    validator("DeclarationsLog").validate((await service.get("/api/declarations")).json()["data"])
    validator("PostsLog").validate((await service.get("/api/posts")).json()["data"])


def test_the_schemas_refuse_what_the_contract_rules_out(contract: Contract) -> None:
    national = {
        "election": "x",
        "total_seats": 2,
        "majority": 2,
        "declared": 0,
        "seats_to_declare": 2,
        "parties": {
            "A": {
                "name": "A",
                "seats": 0,
                "gains": 0,
                "losses": 0,
                "net": 0,
                "votes": 0,
                "share": 0.0,
                "seats_to_majority": 2,
            }
        },
    }
    good = {"type": "snapshot", "channel": "national", "seq": "0-0", "data": national}
    contract.check(good)
    bad: list[dict[str, Any]] = [
        {**good, "seq": "12"},
        {**good, "data": {**national, "leader": None}},
        {**good, "data": {**national, "surprise": 1}},
        {
            **good,
            "data": {
                **national,
                "feed_check": {
                    "source": "PA",
                    "results": 1,
                    "agrees": False,
                    "differences": {"A": {"seats": [1]}},
                },
            },
        },
        {**good, "channel": "constituency:X"},
        {"type": "delta", "channel": "national", "seq": "2-0", "prev": "1-0", "patch": {"x": 1}},
        {"type": "event", "channel": "national", "seq": "2-0", "prev": "1-0", "data": {}},
        {
            "type": "event",
            "channel": "posts",
            "seq": "2-0",
            "prev": "1-0",
            "data": {"seq": "2-0", "kind": "declaration", "post": {"id": "p"}},
        },
        {"type": "hello", "election": "x", "epoch": "0-0"},
    ]
    for message in bad:
        with pytest.raises(ValidationError):
            contract.check(message)
