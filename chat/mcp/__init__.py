"""Tools from MCP servers: the operator's servers, one pooled session each per worker.

Modules, top down: ``tools`` (what a turn offers and the `Tool` that calls one),
``pool`` (the per-process connections), ``client`` (opening one SDK session),
``probe`` (the admin's "test connection"), ``selectors`` / ``services`` (reads and
writes of `McpServer` / `McpTool`), ``config`` (a row's connection settings and its
encrypted credentials), ``content`` (results as tool output), ``names``.
"""
