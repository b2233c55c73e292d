"""Parquet IO manager: one object per asset partition, so documents never overwrite each other."""

from __future__ import annotations

import json
import typing
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from llmops.paths import is_local, under_data_root

if TYPE_CHECKING:
    from upath import UPath

_JSON_COLUMNS = b"llmops.json_columns"


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Nested values (tables, warnings, entities) become JSON strings: schemas stay flat and
    stable across documents, and a document with no tables cannot break type inference."""
    json_cols = sorted({k for r in rows for k, v in r.items() if isinstance(v, (list, dict))})
    flat = [
        {k: (json.dumps(v, ensure_ascii=False) if k in json_cols else v) for k, v in r.items()}
        for r in rows
    ]
    table = pa.Table.from_pylist(flat)
    return table.replace_schema_metadata({_JSON_COLUMNS: json.dumps(json_cols).encode()})


def table_to_rows(table: pa.Table) -> list[dict[str, Any]]:
    meta = table.schema.metadata or {}
    json_cols = set(json.loads(meta.get(_JSON_COLUMNS, b"[]")))
    rows = table.to_pylist()
    for r in rows:
        for k in json_cols:
            if r.get(k) is not None:
                r[k] = json.loads(r[k])
    return rows


class _ParquetUPathIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if isinstance(obj, dict):
            obj = [obj]
        if not isinstance(obj, list):
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: the Parquet IO manager stores a list of "
                f"records or a record, got {type(obj).__name__}"
            )
        table = rows_to_table(obj)
        if not is_local(str(path)):
            with path.open("wb") as fh:  # one PUT: an object store never shows half an object
                pq.write_table(table, fh)
            return
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            pq.write_table(table, fh)
        tmp.rename(path)  # atomic on local disks: a crash never leaves a half-written partition

    def load_from_path(self, context: dg.InputContext, path: UPath) -> list[dict[str, Any]]:
        if not is_local(str(path)):
            # fsspec caches listings per process: a long-lived worker that listed the prefix
            # before another worker wrote this partition would see it "missing" and the
            # knowledge base would silently skip it (allow_missing_partitions).
            path.fs.invalidate_cache(str(path))
        with path.open("rb") as fh:
            return table_to_rows(pq.read_table(fh))

    def load_partitions(self, context: dg.InputContext) -> Any:
        """One partition is returned bare by UPathIOManager; an input declared as a mapping of
        partitions (the knowledge base over all documents) gets ``{key: rows}`` even when the
        inbox holds a single document."""
        loaded = super().load_partitions(context)
        keys = context.asset_partition_keys
        typing_type = getattr(context.dagster_type, "typing_type", None)
        if len(keys) == 1 and typing.get_origin(typing_type) is dict:
            return {keys[0]: loaded}
        return loaded

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, dg.MetadataValue]:
        n = len(obj) if isinstance(obj, list) else 1
        return {"rows": dg.MetadataValue.int(n)}


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Stores list-of-record outputs as Parquet under ``base_dir`` (local path or fsspec URL).

    ``base_dir`` unset: ``$LLMOPS_ASSETS_URI`` (e.g. ``s3://bucket/assets``), else
    ``$LLMOPS_DATA_DIR/assets``. On S3 the credentials and endpoint come from the environment
    as boto3 reads them (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``
    for S3-compatible stores); ``storage_options`` passes anything else to the fsspec filesystem.
    """

    base_dir: str | None = None
    storage_options: dict[str, Any] = {}

    def create_io_manager(self, context: dg.InitResourceContext) -> _ParquetUPathIOManager:
        from upath import UPath

        base = UPath(under_data_root(self.base_dir, "assets"), **self.storage_options)
        return _ParquetUPathIOManager(base_path=base)
