"""What the service and its clients share: the wire protocol's codec — messages out (encoded
once, JSON and websocket frame), requests in (parsed, with an error for anything else), close
codes — and how to reach the stream (``stream``: Redis URLs, Sentinel, the embedded socket).

Besides ``service.core`` and ``service.data``, this is the only service code that the bundled
clients import (the load generator also starts servers with ``service.embedded``'s helpers).
"""
