"""From the tally's changes to subscribers' queues: channels, resume, the slow-client policy,
the embargo. Nothing here awaits or touches a socket: transports implement ``Sink``."""
