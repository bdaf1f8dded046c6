"""Write dataset rows to CSV (standard library) or Parquet (pyarrow, optional extra)."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any

from farm.errors import DeviceUnavailable

__all__ = ["export_rows"]


def export_rows(rows: list[dict[str, Any]], path: Path, fmt: str) -> None:
    """Write atomically: a failed export never leaves a half-written file behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if fmt == "csv":
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                if rows:
                    w = csv.DictWriter(f, fieldnames=list(rows[0]))
                    w.writeheader()
                    w.writerows(rows)
        elif fmt == "parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise DeviceUnavailable("parquet export needs pyarrow: pip install 'hwfarm[parquet]'") from None
            pq.write_table(pa.Table.from_pylist(rows), tmp)
        else:
            raise ValueError(fmt)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
