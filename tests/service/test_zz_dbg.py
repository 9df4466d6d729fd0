import asyncio
from tests.service.conftest import NIGHT_2024, connect, xadd
from tests.service.test_asyncapi import CHANNELS, extra_events

async def test_dbg(service, redis):
    async with connect(service) as client:
        print(await client.receive())
        await client.subscribe(*CHANNELS)
        for _ in CHANNELS:
            m = await client.receive()
        ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:60], *extra_events())
        for i in range(400):
            try:
                async with asyncio.timeout(2):
                    m = await client.receive()
            except TimeoutError:
                print("timeout"); break
            if m["type"] not in ("delta", "event"):
                print(i, m)
