"""Idempotency keys scoped per project *and* mode (issue 12): a test key's request never
answers for a live key's, nor claims a key production will use.

Rows written before this migration count as live: a live retry of a push accepted before the
upgrade still gets its first answer (never a second live send); a test retry of one runs again,
in the sandbox. Keys live 24 hours, so this matters for a day.

SQLite cannot drop a UNIQUE constraint written inside its CREATE TABLE (Tortoise's
RemoveConstraint drops an index of that name, which SQLite does not have), and Tortoise's own
SQLite table rebuild leaves the indexes behind; so on SQLite the table is rebuilt here by hand
and the PostgreSQL-only operations are skipped. Both dialects end with the same columns, the
(project, mode, key) unique constraint and the expires_at index.
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint

from controlplane.models.api_keys import KeyMode


class _NotOnSQLite:
    async def database_forward(
        self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None
    ) -> None:
        if state_editor is not None and state_editor.DIALECT == "sqlite":
            return
        await super().database_forward(app_label, old_state, new_state, state_editor)  # type: ignore[misc]


class RemoveConstraint(_NotOnSQLite, ops.RemoveConstraint):
    pass


class AddField(_NotOnSQLite, ops.AddField):
    pass


class AlterField(_NotOnSQLite, ops.AlterField):
    pass


_SQLITE_REBUILD = [
    """CREATE TABLE "new__idempotency_keys" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "mode" VARCHAR(4) NOT NULL,
    "key" VARCHAR(255) NOT NULL,
    "request_hash" VARCHAR(64) NOT NULL,
    "status" VARCHAR(12) NOT NULL,
    "response_status" INT,
    "response_body" JSON,
    "created_at" TIMESTAMP NOT NULL,
    "expires_at" TIMESTAMP NOT NULL,
    "project_id" VARCHAR(32) NOT NULL REFERENCES "projects" ("id") ON DELETE CASCADE
)""",
    """INSERT INTO "new__idempotency_keys" ("id", "mode", "key", "request_hash", "status",
    "response_status", "response_body", "created_at", "expires_at", "project_id")
SELECT "id", 'live', "key", "request_hash", "status", "response_status", "response_body",
    "created_at", "expires_at", "project_id" FROM "idempotency_keys\"""",
    'DROP TABLE "idempotency_keys"',
    'ALTER TABLE "new__idempotency_keys" RENAME TO "idempotency_keys"',
    'CREATE INDEX "idx_idempotency_expires_ae52bb" ON "idempotency_keys" ("expires_at")',
]


async def _rebuild_on_sqlite(apps: Any, schema_editor: Any) -> None:
    if schema_editor.DIALECT == "sqlite":
        for statement in _SQLITE_REBUILD:
            await schema_editor._run_sql(statement)


_MODE_DESCRIPTION = "TEST: test\nLIVE: live"


class Migration(migrations.Migration):
    dependencies = [('brik', '0008_state')]

    initial = False

    operations = [
        RemoveConstraint(
            model_name='IdempotencyKey',
            name=None,
            fields=['project', 'key'],
        ),
        # PostgreSQL: existing rows get 'live' from a default that is dropped right after.
        AddField(
            model_name='IdempotencyKey',
            name='mode',
            field=fields.CharEnumField(description=_MODE_DESCRIPTION, enum_type=KeyMode,
                                       max_length=4, db_default=KeyMode.LIVE),
        ),
        AlterField(
            model_name='IdempotencyKey',
            name='mode',
            field=fields.CharEnumField(description=_MODE_DESCRIPTION, enum_type=KeyMode,
                                       max_length=4),
        ),
        ops.RunPython(_rebuild_on_sqlite),
        ops.AddConstraint(
            model_name='IdempotencyKey',
            constraint=UniqueConstraint(fields=('project', 'mode', 'key'), name=None),
        ),
    ]
