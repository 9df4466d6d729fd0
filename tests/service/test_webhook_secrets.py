"""Webhook targets as an operator writes them: their credentials and query (which may hold a
key) are never logged, as README promises for tokens; a list entry that is not one URL is
refused rather than sent to a URL with spaces in it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from service.settings import Settings
from service.webhooks import WebhookError, parse_targets
from tests.core.builders import bundled_election
from tests.service.conftest import run_service
from tests.service.test_webhooks import Receiver, receiving

ELECTION = bundled_election()


async def test_a_webhook_targets_password_and_query_never_reach_the_log(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with receiving(Receiver()) as receiver:
        target = f"http://desk:hunter2-password@127.0.0.1:{receiver.port}/national?key=s3cret-key"
        settings = make_settings(webhooks=target)
        async with run_service(settings):
            await receiver.wait_for("the start's document", lambda: bool(receiver.requests))

    assert receiver.requests[0][:2] == ("PUT", "/national")
    logged = caplog.text
    assert "hunter2-password" not in logged
    assert "s3cret-key" not in logged


def test_a_comma_list_entry_with_a_channel_or_method_is_refused_pointing_to_the_file_form() -> None:
    # Written as a line of the file would be; taken as it was, it PUT national to
    # ".../latest%20latest%20POST".
    with pytest.raises(WebhookError) as raised:
        parse_targets("http://a.example/national, http://a.example/latest latest POST", ELECTION)

    assert str(raised.value) == (
        "webhook 2: 'http://a.example/latest latest POST' is not one URL: a channel or "
        "method needs the @FILE form, one 'URL [CHANNEL] [METHOD]' a line"
    )
