"""The turn engine: one chat turn from a saved user message to a persisted, streamed answer.

Public API for the transport (import from the submodules; this package imports
nothing, so ``chat.tasks`` can import the engine and the engine ``chat.tasks``):

- ``chat.engine.turn.run_turn(...)``: the async generator of stream events;
  ``StreamLock`` is the protocol of the stream lock the transport supplies;
- ``chat.engine.events``: one class per chunk type, ``to_wire()``, ``event_from_wire()``;
- ``chat.engine.accumulator.EventAccumulator``: folds a stream into its result
  and gives the events that close blocks a stopped engine left open;
- ``chat.engine.followups``: ``PendingFollowUp`` (or any object with ``content`` and
  optional ``context``/``file_ids``, see ``PendingLike``) is what ``drain_pending`` returns.
"""
