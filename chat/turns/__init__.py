"""The turn machinery: how a message becomes a running turn and how its chunks reach listeners.

- `scripts`: the Redis clients, every key name and every Lua script.
- `registry`: a turn's state in Redis (claim, completion, reaping, cancel).
- `dispatch`: sending a message, the one way a turn starts.
- `runtime`: the worker side of a running turn.
- `live`: the per-process pub/sub hub that fans chunks out to listeners.
- `sse`: a turn's log as server-sent events.
"""
