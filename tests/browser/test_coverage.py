"""Live coverage on the page: the posts panel, each seat's posts, and hostile text shown as
text (or refused by the service), never run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.conftest import TIMEOUT
from tests.replies import entries
from tests.service.conftest import NIGHT_2024, RunningService, xadd

pytestmark = pytest.mark.browser

OpenPage = Callable[..., Awaitable[Page]]
PETERBOROUGH = "E14001425"
ALDERSHOT = "E14001063"


def post(
    post_id: str, title: str, body: str = "Housing, and the cost of living.", **fields: Any
) -> dict[str, Any]:
    return {"type": "post", "id": post_id, "title": title, "body": body, **fields}


def withdrawal(post_id: str) -> dict[str, Any]:
    return {"type": "post", "id": post_id, "withdrawn": True}


async def test_the_live_coverage_panel_shows_posts_newest_first_and_follows_every_change(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    await xadd(
        redis,
        stream,
        NIGHT_2024[0],  # the exit poll at 22:00 begins the night: times in it are bare
        post(
            "p1",
            "What were the key issues in Peterborough?",
            "Housing.\nAnd the cost of living.",
            author="Ana Ruiz",
            role="Political correspondent",
            published_at="2024-07-04T23:21:00+01:00",
            constituencies=[PETERBOROUGH],
        ),
    )
    page = await open_page(service.http + "/")
    posts = page.locator("#posts > li")
    await expect(posts).to_have_count(1)
    first = posts.first
    await expect(first.locator(".post-title")).to_have_text(
        "What were the key issues in Peterborough?"
    )
    await expect(first.locator("time")).to_have_text("23:21")
    await expect(first.locator(".byline")).to_have_text("Ana Ruiz, Political correspondent")
    # The line break is kept: two lines of text.
    assert await first.locator(".post-body").inner_text() == "Housing.\nAnd the cost of living."
    await expect(first.locator(".seat-link")).to_have_text("Peterborough")
    await expect(page.locator("#no-posts")).to_be_hidden()

    await xadd(
        redis, stream, post("p2", "Turnout looks down", published_at="2024-07-05T00:40:00+01:00")
    )
    await expect(posts).to_have_count(2)
    await expect(posts.locator(".post-title")).to_have_text(
        ["Turnout looks down", "What were the key issues in Peterborough?"]
    )
    await expect(page.locator("#announcer")).to_contain_text("New post: Turnout looks down")
    await xadd(redis, stream, post("p1", "The key issues in Peterborough", author="Ana Ruiz"))
    await expect(posts.locator(".post-title")).to_have_text(
        ["Turnout looks down", "The key issues in Peterborough"]
    )
    # A replacement without a time keeps the time the post was published at.
    await expect(posts.nth(1).locator("time")).to_have_text("23:21")
    await xadd(redis, stream, withdrawal("p2"))
    await expect(posts).to_have_count(1)
    await expect(posts.locator(".post-title")).to_have_text(["The key issues in Peterborough"])
    await xadd(redis, stream, withdrawal("p1"))
    await expect(posts).to_have_count(0)
    await expect(page.locator("#no-posts")).to_be_visible()


async def test_a_seat_shows_every_post_about_it_even_older_than_the_panel_holds(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    about: dict[str, Any] = {"constituencies": [PETERBOROUGH]}
    await xadd(
        redis,
        stream,
        post("old", "Peterborough: the count begins", **about),
        *(post(f"filler-{n}", f"Elsewhere {n}") for n in range(55)),
        post("both", "Two close seats", constituencies=[ALDERSHOT, PETERBOROUGH]),
    )
    page = await open_page(f"{service.http}/?seat={PETERBOROUGH}")
    seat_posts = page.locator("#seat-posts .post")
    await expect(page.locator("#seat-result h3")).to_have_text("Peterborough")
    await expect(seat_posts.locator(".post-title")).to_have_text(
        ["Two close seats", "Peterborough: the count begins"]
    )
    await expect(page.locator("#posts > li")).to_have_count(50)
    # Live: a new post about the seat joins; a post changed to be about another seat leaves.
    await xadd(redis, stream, post("new", "Peterborough: a recount?", **about))
    await expect(seat_posts.locator(".post-title")).to_have_text(
        ["Peterborough: a recount?", "Two close seats", "Peterborough: the count begins"]
    )
    await xadd(
        redis, stream, post("both", "One close seat", constituencies=[ALDERSHOT]), withdrawal("old")
    )
    await expect(seat_posts.locator(".post-title")).to_have_text(["Peterborough: a recount?"])
    # A seat a post is about is one click away.
    await page.locator("#posts > li").first.locator(".seat-link").click()
    await expect(page.locator("#seat-result h3")).to_have_text("Peterborough")
    await page.locator('#posts .seat-link[data-constituency="E14001063"]').click()
    await expect(page.locator("#seat-result h3")).to_have_text("Aldershot")
    await expect(page.locator("#seat-search")).to_have_value("Aldershot")
    await expect(seat_posts.locator(".post-title")).to_have_text(["One close seat"])


# Each would set window.pwned (or fetch a URL) if the page ever treated text as markup.
HOSTILE = [
    "<script>window.pwned = 'script'</script>",
    '<img src="x" onerror="window.pwned = \'img\'">',
    "<svg onload=\"window.pwned = 'svg'\"></svg>",
    "<a href=\"javascript:window.pwned='link'\">click</a>",
    "<iframe srcdoc=\"<script>parent.pwned='iframe'</script>\"></iframe>",
    "&lt;b&gt;not bold&lt;/b&gt; &amp; <b>not bold either</b>",
    "{{constructor.constructor('window.pwned=1')()}} ${window.pwned=2}",
]


async def test_hostile_text_is_shown_as_text_and_never_run(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    body = "\n".join(HOSTILE)
    long_word = "A" * 10_000  # the longest body a post may have, with nowhere to break
    events = [
        post(
            "markup",
            HOSTILE[1],
            body,
            author=HOSTILE[0],
            role=HOSTILE[2],
            constituencies=[PETERBOROUGH],
        ),
        post("long", "A very long post", long_word),
        # Refused by the service, with a reason: never shown at all.
        post("escape", "Clear \x1b[2J the screen"),
        post("override", "Labour \u202eniag", "reordered"),
        post("nul", "Nul", "before\x00after"),
    ]
    ids = await xadd(redis, stream, *events)
    async with asyncio.timeout(TIMEOUT):
        while await redis.xlen(f"{stream}:rejected") < 3:
            await asyncio.sleep(0.02)
    rejected = {
        fields[b"id"].decode(): fields[b"reason"].decode()
        for _, fields in entries(await redis.xrange(f"{stream}:rejected"))
    }
    assert "control character (U+001B)" in rejected[ids[2]]
    assert "bidirectional control (U+202E)" in rejected[ids[3]]
    assert "control character (U+0000)" in rejected[ids[4]]

    for width in (1280, 360):
        page = await open_page(f"{service.http}/?seat={PETERBOROUGH}", width, 900)
        posts = page.locator("#posts > li")
        await expect(posts).to_have_count(2)
        shown = posts.nth(1)
        await expect(shown.locator(".post-title")).to_have_text(HOSTILE[1])
        await expect(shown.locator(".byline")).to_have_text(f"{HOSTILE[0]}, {HOSTILE[2]}")
        assert await shown.locator(".post-body").inner_text() == body
        # Nothing of it became an element, a handler or a script that ran.
        for where in ("#posts", "#seat-posts"):
            made = await page.eval_on_selector(
                where, "(root) => root.querySelectorAll('script, img, svg, a, iframe, b').length"
            )
            assert made == 0, where
        await expect(page.locator("#seat-posts .post-title")).to_have_text([HOSTILE[1]])
        assert await page.evaluate("window.pwned") is None
        # The long body is folded, stays inside its panel and opens on request.
        long_post = posts.first
        await expect(long_post.locator(".post-title")).to_have_text("A very long post")
        fits = await page.eval_on_selector(
            "#coverage",
            """(panel) => ({
                panel: panel.scrollWidth <= panel.clientWidth,
                page: document.documentElement.scrollWidth <= window.innerWidth,
            })""",
        )
        assert fits == {"panel": True, "page": True}
        more = long_post.locator("button.more")
        await expect(more).to_have_attribute("aria-expanded", "false")
        await more.click()
        await expect(more).to_have_attribute("aria-expanded", "true")
        assert (await long_post.locator(".post-body").inner_text()).replace("\n", "") == long_word
        await more.click()
        await expect(more).to_have_text("Read more")
        # Nothing refused is shown.
        await expect(page.locator("#posts")).not_to_contain_text("screen")
        await expect(page.locator("#posts")).not_to_contain_text("reordered")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / f"coverage-hostile-{width}.png", full_page=True)
    # The REST answer carries the same text, escaped only as JSON escapes it.
    recent = (await service.get("/api/posts")).json()["data"]["recent"]
    assert recent[0]["body"] == body
    assert orjson.loads(orjson.dumps(recent[0]))["title"] == HOSTILE[1]


async def test_long_runs_get_break_points_between_whole_characters_and_keep_their_text(
    service: RunningService, open_page: OpenPage
) -> None:
    page = await open_page(service.http + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    cases = [
        "short words stay as they are",
        "https://example.org/" + "a" * 100,
        "e\u0301" * 50,  # e and a combining acute accent, fifty times
        "\U0001f44d\U0001f3fd" * 45,  # a thumbs up with a skin tone, forty-five times
    ]
    results = await page.evaluate(
        """async (cases) => {
            const { breakable } = await import("./static/dom.js");
            return cases.map((text) => {
                const nodes = breakable(text);
                const chunks = nodes.filter((node) => typeof node === "string");
                return {
                    text: chunks.join(""),
                    breaks: nodes.length - chunks.length,
                    whole: chunks.every((chunk) => !/^[\\u0301\\u{1f3fd}]/u.test(chunk)),
                };
            });
        }""",
        cases,
    )
    assert [r["text"] for r in results] == cases
    assert [r["breaks"] for r in results] == [0, 3, 1, 1]
    assert all(r["whole"] for r in results)


async def test_a_seats_posts_are_fetched_again_when_the_log_starts_afresh(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    about: dict[str, Any] = {"constituencies": [PETERBOROUGH]}
    await xadd(redis, stream, post("p1", "Before the stream began again", **about))
    page = await open_page(f"{service.http}/?seat={PETERBOROUGH}")
    seat_posts = page.locator("#seat-posts .post-title")
    await expect(seat_posts).to_have_text(["Before the stream began again"])
    # The stream begun again: the page gets a new epoch and a fresh posts snapshot, standing
    # for events it never saw (p1 is gone without a withdrawal).
    await redis.delete(stream)
    await xadd(redis, stream, post("p2", "After", **about))
    await expect(page.locator("#posts .post-title")).to_have_text(["After"])
    await expect(seat_posts).to_have_text(["After"])
