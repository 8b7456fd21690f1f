"""PostgreSQL full-text search indexes for chat search (`chat.search`).

Two GIN expression indexes, built `CONCURRENTLY` (so `atomic = False`): one on the
`simple` tsvector of each message's content, one on each session's title. They match
exactly the expressions `chat.search` filters on (`SearchVector(field, config="simple")`
compiles to `to_tsvector('simple'::regconfig, COALESCE(field, ''))`).

On SQLite (no GIN, no tsvector) the operation does nothing: search there is a `LIKE`
scan. The indexes are not part of the models' state (Django cannot express a
vendor-only index), so `makemigrations` never sees them.
"""

from typing import Any

from django.db import migrations

INDEXES = {
    "chat_message_content_fts": ("chat_chatmessage", "content"),
    "chat_session_title_fts": ("chat_chatsession", "title"),
}


class AddSearchIndexesOnPostgreSQL(migrations.operations.base.Operation):
    reduces_to_sql = True
    reversible = True

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for name, (table, column) in INDEXES.items():
            schema_editor.execute(
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{table}" '
                f"USING gin (to_tsvector('simple'::regconfig, COALESCE(\"{column}\", ''::text)))"
            )

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for name in INDEXES:
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')

    def describe(self) -> str:
        return "Add the full-text search GIN indexes (PostgreSQL only)"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("chat", "0003_chatmessage_kind_notices")]

    operations = [AddSearchIndexesOnPostgreSQL()]
