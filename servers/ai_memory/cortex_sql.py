"""Every piece of Snowflake SQL that depends on VECTOR or Cortex lives here.

The fakesnow emulator used in the tests has neither a VECTOR type nor Cortex functions (and
its VECTOR_COSINE_SIMILARITY returns a distance), so the tests execute the ARRAY variants of
these statements against fakesnow and only parse the Cortex variants with sqlglot's
Snowflake dialect.
"""

from __future__ import annotations

CORTEX_MODEL = "snowflake-arctic-embed-m-v1.5"
CORTEX_DIM = 768

_COLUMNS = (
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
)


def create_table_sql(use_cortex: bool) -> str:
    emb_type = f"VECTOR(FLOAT, {CORTEX_DIM})" if use_cortex else "ARRAY"
    return (
        "CREATE TABLE IF NOT EXISTS MEMORIES ("
        "ID VARCHAR PRIMARY KEY, NAMESPACE VARCHAR NOT NULL, CONTENT VARCHAR NOT NULL, "
        "CONTENT_HASH VARCHAR NOT NULL, METADATA VARIANT, "
        f"EMBEDDING {emb_type}, EMBEDDER VARCHAR, "
        "CREATED_AT TIMESTAMP_NTZ NOT NULL, UPDATED_AT TIMESTAMP_NTZ NOT NULL, "
        "EXPIRES_AT TIMESTAMP_NTZ NOT NULL)"
    )


def embedding_expr(use_cortex: bool, source: str = "s") -> str:
    if use_cortex:
        return f"SNOWFLAKE.CORTEX.EMBED_TEXT_768('{CORTEX_MODEL}', {source}.CONTENT)"
    return f"{source}.EMBEDDING"


def merge_sql(n_rows: int, use_cortex: bool) -> str:
    """Upsert n rows by ID. Parameters: 10 per row, in _COLUMNS order (pyformat %s)."""
    row = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    values = ", ".join([row] * n_rows)
    emb = embedding_expr(use_cortex)
    # On content change Cortex re-embeds; when only metadata changed, keep the old vector.
    emb_update = f"IFF(t.CONTENT_HASH = s.CONTENT_HASH, t.EMBEDDING, {emb})" if use_cortex else emb
    return (
        "MERGE INTO MEMORIES t USING ("
        "SELECT column1 AS ID, column2 AS NAMESPACE, column3 AS CONTENT, column4 AS CONTENT_HASH, "
        "PARSE_JSON(column5) AS METADATA, PARSE_JSON(column6) AS EMBEDDING, column7 AS EMBEDDER, "
        "TO_TIMESTAMP_NTZ(column8) AS CREATED_AT, TO_TIMESTAMP_NTZ(column9) AS UPDATED_AT, "
        f"TO_TIMESTAMP_NTZ(column10) AS EXPIRES_AT FROM VALUES {values}) s ON t.ID = s.ID "
        "WHEN MATCHED THEN UPDATE SET NAMESPACE = s.NAMESPACE, CONTENT = s.CONTENT, "
        "CONTENT_HASH = s.CONTENT_HASH, METADATA = s.METADATA, "
        f"EMBEDDING = {emb_update}, EMBEDDER = s.EMBEDDER, "
        "UPDATED_AT = s.UPDATED_AT, EXPIRES_AT = s.EXPIRES_AT "
        "WHEN NOT MATCHED THEN INSERT (" + ", ".join(_COLUMNS) + ") VALUES ("
        "s.ID, s.NAMESPACE, s.CONTENT, s.CONTENT_HASH, s.METADATA, "
        f"{emb}, s.EMBEDDER, s.CREATED_AT, s.UPDATED_AT, s.EXPIRES_AT)"
    )


def dense_search_sql() -> str:
    """Top-N by cosine similarity, the query embedded by Cortex (pyformat named params)."""
    return (
        "SELECT ID, VECTOR_COSINE_SIMILARITY(EMBEDDING, "
        f"SNOWFLAKE.CORTEX.EMBED_TEXT_768('{CORTEX_MODEL}', %(query)s)) AS SCORE "
        "FROM MEMORIES WHERE NAMESPACE = %(namespace)s AND EXPIRES_AT > %(now)s::TIMESTAMP_NTZ "
        "ORDER BY SCORE DESC LIMIT %(limit)s"
    )
