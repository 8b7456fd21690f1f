"""The turn machinery: how a message becomes a running turn and how its chunks reach listeners.

From the top down (each module imports only those below it; `pyproject.toml`'s
import contracts hold it so):

- `dispatch`: sending a message, the one way a turn starts.
- `sse`: a turn's log as server-sent events.
- `runtime`: the worker side of a running turn (locks, liveness, stop, limits, publishing).
- `follow`: following a turn's log, replayed then live, for the SSE relay and the sockets.
- `registry`: a turn's state in Redis (claim, completion, orphans, cancel).
- `pending`: follow-ups queued while a turn runs.
- `live`: the per-process pub/sub hub that fans chunks out to listeners.
- `notify`: channel-layer notices to a session's or a user's sockets.
- `scripts`: the Redis clients, every key name and every Lua script.
- `loop`: the worker's shared event loop.

The database writes a turn needs (its failure notice, its usage record) are in
`chat.services`, which calls the registry, never the other way round.
"""
