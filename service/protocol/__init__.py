"""The wire protocol's codec: messages out (encoded once, JSON and websocket frame), requests
in (parsed, with an error for anything else), close codes. No I/O.

Besides ``service.core`` and ``service.data``, this is the only service code that the bundled
clients import.
"""
