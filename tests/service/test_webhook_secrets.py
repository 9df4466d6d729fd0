"""A webhook target's credentials and query (which may hold a key) are never logged, as
README promises for tokens: metrics and warnings name the target without them."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from service.settings import Settings
from tests.service.conftest import run_service
from tests.service.test_webhooks import Receiver, receiving


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
