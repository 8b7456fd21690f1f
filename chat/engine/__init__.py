"""The turn engine: one chat turn from a saved user message to a persisted, streamed answer.

Public API for the transport (import from the submodules; this package imports
nothing, so dispatch can import ``request`` without loading the engine):

- ``chat.engine.request``: ``TurnRequest`` (what dispatch asks for, carried as JSON
  by the Celery task) and ``TurnHooks`` (cancel, drain and requeue of follow-ups);
- ``chat.engine.turn.run_turn(request, hooks)``: the async generator of stream events;
- ``chat.engine.events``: one class per chunk type, ``to_wire()``, ``event_from_wire()``;
- ``chat.engine.accumulator.EventAccumulator``: folds a stream into its result
  and gives the events that close blocks a stopped engine left open;
- ``chat.engine.followups``: ``PendingFollowUp`` (or any object with ``content`` and
  optional ``context``/``file_ids``, see ``PendingLike``) is what ``drain_pending`` returns.

Inside: ``transcript`` holds the turn's rows and every write of them, ``followups``
drains messages sent during the turn, ``toolcalls`` folds streamed tool calls,
``context`` builds what the model sees, ``usage`` sums tokens and cost.
"""
