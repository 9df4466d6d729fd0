"""Small reference servers that the load generator measures beside seatcast.

The two websocket references read the same Redis stream and speak just enough of seatcast's
wire protocol for the same load to run against them: ``hello`` on connect; ``subscribe``
answered with a trivial snapshot per channel (its ``seq`` is the channel's last, its data
empty); then every stream entry as a ``delta`` (state channels) or ``event`` (``declarations``)
carrying ``seq`` and ``prev``. They compute no tally: what they measure is the fan-out alone.

- :mod:`.naive_starlette`: Starlette under uvicorn's default websocket implementation, sending
  each message with ``await websocket.send_text`` to one client after another.
- :mod:`.ws_broadcast`: the websockets library's own server and its ``broadcast()``.

The third is Redis's own pub/sub, in C: a redis-server the load generator starts, whose
subscribers speak RESP and get no hello and no snapshot, only each message's same JSON.

- :mod:`.redis_pubsub`: the relay that reads the stream, frames each entry with the same
  :class:`~.relay.Relay` and PUBLISHes every frame on the channel's name.
"""
