"""What the service and its clients share: the wire protocol's codec — messages out (encoded
once, JSON and websocket frame), requests in (parsed, with an error for anything else), close
codes — how to reach the stream (``stream``: Redis URLs, Sentinel, the embedded socket), and
how to run a redis-server of our own (``redis_server``).

Besides ``service.core`` and ``service.data``, this is the only service code that the bundled
clients import (tests/test_layout.py holds them to it).
"""
