"""Chat writes, one module per entity: import the submodule (`from chat.services.sessions import session_create`)."""
