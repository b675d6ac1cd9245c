"""fakesnow, extended with what Snowflake has and its DuckDB lacks, so that the Cortex SQL the
Snowflake store sends executes for real in the tests:

- `AI_EMBED(model, text)` and `SNOWFLAKE.CORTEX.EMBED_TEXT_768(model, text)`: DuckDB functions
  backed by a local embedder;
- the `VECTOR(FLOAT, n)` type, which DuckDB cannot parse: rendered as `DOUBLE[]`;
- `VECTOR_COSINE_SIMILARITY`, which sqlglot renders for DuckDB as a cosine *distance*: rendered
  as DuckDB's `LIST_COSINE_SIMILARITY`.

The last two are sqlglot generator entries for its DuckDB dialect (how fakesnow turns Snowflake SQL
into DuckDB SQL). sqlglot builds each generator's dispatch table once, on first use, so they are
installed for the whole test session before anything is rendered (`install_rendering`, from
conftest.py); they touch nothing but the VECTOR type and cosine similarity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
from duckdb.sqltypes import DOUBLE, VARCHAR
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB

from embedding.embedder import Embedder


def install_rendering() -> None:
    """Render Snowflake's VECTOR type and VECTOR_COSINE_SIMILARITY as DuckDB can run them."""
    generator = DuckDB.Generator
    if getattr(generator, "_fake_cortex", False):
        return
    plain_datatype = generator.datatype_sql

    def datatype(self: Any, e: exp.DataType) -> str:
        return "DOUBLE[]" if e.this == exp.DataType.Type.VECTOR else plain_datatype(self, e)

    def similarity(self: Any, e: exp.CosineDistance) -> str:
        return f"LIST_COSINE_SIMILARITY({self.sql(e, 'this')}, {self.sql(e, 'expression')})"

    generator.TRANSFORMS = {**generator.TRANSFORMS, exp.DataType: datatype, exp.CosineDistance: similarity}
    generator._fake_cortex = True  # type: ignore[attr-defined]


@contextmanager
def cortex_functions(embedder: Embedder, connect_kwargs: dict[str, Any]) -> Iterator[list[str]]:
    """Register the Cortex functions in the running fakesnow server; yields the texts embedded."""
    import fakesnow.server as fakesnow_server
    import snowflake.connector

    seen: list[str] = []

    def ai_embed(model: str, text: str) -> list[float]:
        seen.append(text)
        return [float(x) for x in embedder.embed([text])[0]]

    duck = fakesnow_server.shared_fs.duck_conn
    duck.create_function("ai_embed", ai_embed, [VARCHAR, VARCHAR], duckdb.list_type(DOUBLE))
    with snowflake.connector.connect(**connect_kwargs) as conn:
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS SNOWFLAKE")
        cur.execute("CREATE SCHEMA IF NOT EXISTS SNOWFLAKE.CORTEX")
    duck.execute("CREATE OR REPLACE MACRO SNOWFLAKE.CORTEX.EMBED_TEXT_768(m, t) AS ai_embed(m, t)")
    try:
        yield seen
    finally:
        duck.execute("DROP MACRO IF EXISTS SNOWFLAKE.CORTEX.EMBED_TEXT_768")
        duck.remove_function("ai_embed")
