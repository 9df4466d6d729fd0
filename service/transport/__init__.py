"""How subscribers' messages reach them: each transport implements ``fanout.Sink`` for its
connections and lets them in through ``admission``. Calls go one way: a transport calls the
hub (connect, handle, disconnect); the hub writes to sinks and never waits on them."""
