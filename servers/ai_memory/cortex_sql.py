"""Every statement the Snowflake store sends, in one place (Snowflake SQL, pyformat parameters).

Embeddings: with Cortex, `EMBEDDING` is a `VECTOR(FLOAT, n)` filled in SQL by `AI_EMBED(model,
text)` (or, as a fallback setting, the legacy `SNOWFLAKE.CORTEX.EMBED_TEXT_768`), and recall
ranks in SQL with `VECTOR_COSINE_SIMILARITY`; without Cortex it is an ARRAY holding the local
embedder's vector. Statements are kept under Snowflake's recommended 1 MB: `chunks` splits a
batch by the size of its values. The tests run these statements for real against fakesnow,
with the Cortex functions registered in its DuckDB (tests/servers/ai_memory/fake_cortex.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from servers.ai_memory.filters import as_date  # the filter language's own notion of a date

MAX_STATEMENT_BYTES = 900_000  # Snowflake recommends statements under 1 MB
MAX_ROWS = 500

# output dimension of Snowflake's embedding models (AI_EMBED / EMBED_TEXT_*)
MODEL_DIMS = {
    "snowflake-arctic-embed-l-v2.0": 1024,
    "snowflake-arctic-embed-l-v2.0-8k": 1024,
    "snowflake-arctic-embed-m-v2.0": 768,
    "snowflake-arctic-embed-m-v1.5": 768,
    "snowflake-arctic-embed-m": 768,
    "e5-base-v2": 768,
    "multilingual-e5-large": 1024,
    "nv-embed-qa-4": 1024,
    "voyage-multilingual-2": 1024,
}
FUNCTIONS = {"AI_EMBED": "AI_EMBED", "EMBED_TEXT_768": "SNOWFLAKE.CORTEX.EMBED_TEXT_768"}

COLUMNS = (
    "ID",
    "NAMESPACE",
    "CONTENT",
    "CONTENT_HASH",
    "METADATA",
    "EMBEDDING",
    "EMBEDDER",
    "CREATED_AT",
    "UPDATED_AT",
    "EXPIRES_AT",
    "VERSION",
)


class Cortex:
    """Which Cortex function and model embed, and the vector size they give."""

    def __init__(self, function: str = "AI_EMBED", model: str = "snowflake-arctic-embed-l-v2.0", dim: int = 0):
        if function not in FUNCTIONS:
            raise ValueError(f"AI_MEMORY_CORTEX_FUNCTION must be one of {sorted(FUNCTIONS)}, got {function!r}")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", model):
            raise ValueError(f"AI_MEMORY_CORTEX_MODEL {model!r} is not a model name")
        self.function = FUNCTIONS[function]
        self.model = model
        self.dim = dim or (768 if function == "EMBED_TEXT_768" else MODEL_DIMS.get(model, 1024))

    def embed(self, text_sql: str) -> str:
        return f"{self.function}('{self.model}', {text_sql})"


def create_sql(cortex: Cortex | None) -> list[str]:
    emb_type = f"VECTOR(FLOAT, {cortex.dim})" if cortex else "ARRAY"
    return [
        "CREATE TABLE IF NOT EXISTS MEMORIES ("
        "ID VARCHAR PRIMARY KEY, NAMESPACE VARCHAR NOT NULL, CONTENT VARCHAR NOT NULL, "
        "CONTENT_HASH VARCHAR NOT NULL, METADATA VARIANT, "
        f"EMBEDDING {emb_type}, EMBEDDER VARCHAR, "
        "CREATED_AT TIMESTAMP_NTZ NOT NULL, UPDATED_AT TIMESTAMP_NTZ NOT NULL, "
        "EXPIRES_AT TIMESTAMP_NTZ NOT NULL, VERSION NUMBER NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS MEMORY_NAMESPACES ("
        "NAMESPACE VARCHAR PRIMARY KEY, VERSION NUMBER NOT NULL, HORIZON NUMBER NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS MEMORY_TOMBSTONES ("
        "ID VARCHAR PRIMARY KEY, NAMESPACE VARCHAR NOT NULL, VERSION NUMBER NOT NULL, "
        "DELETED_AT TIMESTAMP_NTZ NOT NULL)",
    ]


def bump_sql() -> list[str]:
    """Raise a namespace's version (in the apply transaction, which holds the row until commit).
    UPDATE + INSERT-if-missing rather than MERGE: several writers' first rows can only duplicate the
    row, which `version_sql` reads with MAX."""
    return [
        "UPDATE MEMORY_NAMESPACES SET VERSION = VERSION + 1 WHERE NAMESPACE = %(namespace)s",
        "INSERT INTO MEMORY_NAMESPACES (NAMESPACE, VERSION, HORIZON) SELECT %(namespace)s, 1, 0"
        " WHERE NOT EXISTS (SELECT 1 FROM MEMORY_NAMESPACES WHERE NAMESPACE = %(namespace)s)",
    ]


def version_sql() -> str:
    return (
        "SELECT MAX(VERSION), MAX(HORIZON) FROM MEMORY_NAMESPACES WHERE NAMESPACE = %(namespace)s HAVING COUNT(*) > 0"
    )


def chunks(rows: list[list[Any]]) -> Iterator[list[list[Any]]]:
    """Split rows of parameters so that each statement stays under MAX_STATEMENT_BYTES."""
    part: list[list[Any]] = []
    size = 0
    for row in rows:
        n = sum(len(str(v)) * 2 + 8 for v in row)  # quoted and escaped, worst case
        if part and (size + n > MAX_STATEMENT_BYTES or len(part) >= MAX_ROWS):
            yield part
            part, size = [], 0
        part.append(row)
        size += n
    if part:
        yield part


def _source(n_rows: int) -> str:
    row = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    return (
        "SELECT column1 AS ID, column2 AS NAMESPACE, column3 AS CONTENT, column4 AS CONTENT_HASH, "
        "PARSE_JSON(column5) AS METADATA, PARSE_JSON(column6) AS EMBEDDING, column7 AS EMBEDDER, "
        "TO_TIMESTAMP_NTZ(column8) AS CREATED_AT, TO_TIMESTAMP_NTZ(column9) AS UPDATED_AT, "
        "TO_TIMESTAMP_NTZ(column10) AS EXPIRES_AT, column11 AS VERSION "
        f"FROM VALUES {', '.join([row] * n_rows)}"
    )


def upsert_sql(n_rows: int, cortex: Cortex | None) -> list[str]:
    """Upsert n rows by ID: update the ones that exist, insert the others (each statement takes the
    same 11 parameters per row, in COLUMNS order). In one transaction this is a MERGE, written as
    UPDATE + INSERT so that it runs inside a transaction on the emulator too. With Cortex, a row is
    re-embedded only when its content changed; a metadata edit keeps the vector."""
    emb = cortex.embed("s.CONTENT") if cortex else "s.EMBEDDING"
    emb_update = f"IFF(MEMORIES.CONTENT_HASH = s.CONTENT_HASH, MEMORIES.EMBEDDING, {emb})" if cortex else emb
    return [
        f"UPDATE MEMORIES SET NAMESPACE = s.NAMESPACE, CONTENT = s.CONTENT, CONTENT_HASH = s.CONTENT_HASH, "
        f"METADATA = s.METADATA, EMBEDDING = {emb_update}, EMBEDDER = s.EMBEDDER, UPDATED_AT = s.UPDATED_AT, "
        f"EXPIRES_AT = s.EXPIRES_AT, VERSION = s.VERSION FROM ({_source(n_rows)}) s WHERE MEMORIES.ID = s.ID",
        "INSERT INTO MEMORIES (" + ", ".join(COLUMNS) + ") SELECT s.ID, s.NAMESPACE, s.CONTENT, s.CONTENT_HASH, "
        f"s.METADATA, {emb}, s.EMBEDDER, s.CREATED_AT, s.UPDATED_AT, s.EXPIRES_AT, s.VERSION "
        f"FROM ({_source(n_rows)}) s WHERE NOT EXISTS (SELECT 1 FROM MEMORIES t WHERE t.ID = s.ID)",
    ]


def embed_update_sql(n_rows: int) -> str:
    """Set locally computed vectors (ID, CONTENT_HASH, EMBEDDING json, EMBEDDER, VERSION per row),
    only where the content is still the one that was embedded."""
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * n_rows)
    return (
        "UPDATE MEMORIES SET EMBEDDING = s.EMBEDDING, EMBEDDER = s.EMBEDDER, VERSION = s.VERSION FROM ("
        "SELECT column1 AS ID, column2 AS CONTENT_HASH, PARSE_JSON(column3) AS EMBEDDING, column4 AS EMBEDDER, "
        f"column5 AS VERSION FROM VALUES {values}) s "
        "WHERE MEMORIES.ID = s.ID AND MEMORIES.CONTENT_HASH = s.CONTENT_HASH"
    )


def dense_search_sql(cortex: Cortex, filter_sql: str) -> str:
    """Top-N by cosine similarity among the rows that pass the pushed-down filter."""
    return (
        f"SELECT ID, VECTOR_COSINE_SIMILARITY(EMBEDDING, {cortex.embed('%(query)s')}) AS SCORE "
        "FROM MEMORIES WHERE NAMESPACE = %(namespace)s AND EXPIRES_AT > %(now)s::TIMESTAMP_NTZ "
        f"AND EMBEDDING IS NOT NULL AND ({filter_sql}) "
        "ORDER BY SCORE DESC LIMIT %(limit)s"
    )


# -- metadata filters in SQL ---------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
TRUE = "TRUE"


class FilterSQL:
    """A filter (filters.py syntax) as a Snowflake WHERE condition that keeps *at least* every row the
    filter keeps: conditions with an exact SQL form are pushed down (equality and $in on strings and
    numbers, numeric ranges, $and/$or); the rest ($ne, $nin, $not, $exists, dates, booleans, dotted
    paths) become TRUE. The exact filter still runs on the merged hits, so pushing down only narrows
    what the semantic side ranks; it never changes the answer's correctness."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def _param(self, value: Any) -> str:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def compile(self, spec: dict[str, Any] | None) -> str:
        return TRUE if not spec else self._node(spec)

    def _node(self, node: dict[str, Any]) -> str:
        parts = []
        for key, value in node.items():
            if key in ("$and", "$or"):
                subs = [self._node(v) for v in value]
                if key == "$or" and TRUE in subs:
                    parts.append(TRUE)
                else:
                    parts.append("(" + (" AND " if key == "$and" else " OR ").join(subs) + ")")
            elif key.startswith("$") or not _PLAIN_KEY.match(key):
                parts.append(TRUE)
            else:
                parts.append(self._field(key, value))
        kept = [p for p in parts if p != TRUE]
        return " AND ".join(kept) if kept else TRUE

    def _field(self, key: str, spec: Any) -> str:
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        conds = []
        for op, operand in ops.items():
            if op == "$eq":
                conds.append(self._equals(key, [operand]))
            elif op == "$in":
                conds.append(self._equals(key, operand))
            elif op in ("$gt", "$gte", "$lt", "$lte") and _number(operand):
                sym = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
                conds.append(f'TRY_TO_DOUBLE(METADATA:"{key}"::VARCHAR) {sym} {self._param(float(operand))}')
        kept = [c for c in conds if c != TRUE]
        return " AND ".join(kept) if kept else TRUE

    def _equals(self, key: str, values: list[Any]) -> str:
        strings = [v for v in values if isinstance(v, str) and as_date(v) is None]
        numbers = [float(v) for v in values if _number(v)]
        if len(strings) + len(numbers) != len(values):
            return TRUE  # booleans, nulls, dates: no exact SQL form here
        ors = [f'METADATA:"{key}"::VARCHAR = {self._param(s)}' for s in strings]
        ors += [f'TRY_TO_DOUBLE(METADATA:"{key}"::VARCHAR) = {self._param(n)}' for n in numbers]
        ors.append(f'IS_ARRAY(METADATA:"{key}")')  # a list matches when it contains the value
        return "(" + " OR ".join(ors) + ")"


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def embedding_json(vector: Any) -> str:
    return json.dumps([round(float(x), 7) for x in vector])
