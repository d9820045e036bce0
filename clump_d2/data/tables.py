"""Tables in and out: one reader, one writer, one Markdown helper.

* :func:`read_table`: a table (CSV, TSV, Parquet or a FITS binary table) into pandas, naming
  the file on failure. Pickled tables (``.pkl``, ``.pickle``, compressed or not, ``.joblib``)
  are refused, with no opt-in: unpickling runs any code the file holds, and a downloaded
  catalogue must not be able to do that (convert one you trust once, on a machine you trust,
  with ``pandas.read_pickle(p).to_parquet(...)``).
* :func:`write_table`: a DataFrame to Parquet, CSV or FITS (format from the file name),
  atomically: a temporary file in the same folder, then ``os.replace``, so a killed process
  never leaves a half-written table under the final name; an ``OSError`` (a full disk)
  names the table (:func:`clump_d2.data.files.naming_path`).
* :func:`markdown_table`: rows -> a GitHub Markdown table (the README's result tables).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import pandas as pd
from astropy.table import Table

from .files import naming_path
from .image_io import FITS_SUFFIXES

logger = logging.getLogger(__name__)

#: Suffixes :func:`read_table` reads (a catalogue given by file name must end in one).
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet") + FITS_SUFFIXES
#: Pickled tables, refused by :func:`read_table` (unpickling runs code).
PICKLE_SUFFIXES = tuple(s + c for s in (".pkl", ".pickle") for c in
                        ("", ".gz", ".bz2", ".xz", ".zip", ".zst")) + (".joblib",)
#: Formats :func:`write_table` writes.
WRITE_FORMATS = ("parquet", "csv", "fits")


def read_table(path: str | os.PathLike,
               text_columns: Sequence[str] | Callable[[str], bool] = (),
               **csv_kwargs) -> pd.DataFrame:
    """The table at ``path`` as a DataFrame (format from the file name).

    Args:
        path: CSV/TSV, Parquet or FITS table.
        text_columns: columns (names, or a predicate on the name) read as exact text, for ids:
            CSV cells as written (``007`` and 19-digit ids survive), Parquet/FITS integers as
            their decimal digits; a missing cell is NaN. Read as numbers, an integer column
            with one blank cell becomes float64, and ids above 2**53 change (1237648720693755918
            -> 1237648720693755904).
        csv_kwargs: passed to ``pandas.read_csv``.

    Raises:
        FileNotFoundError / ValueError: naming ``path``; ``UnsafeTableError`` for a pickle.
    """
    wanted = text_columns if callable(text_columns) else set(text_columns).__contains__
    path = Path(path)
    name = path.name.lower()
    if name.endswith(PICKLE_SUFFIXES):  # before anything opens it
        raise UnsafeTableError(
            f"table {path} is a Python pickle: pickles are not read, because reading one "
            "would run any code the file contains. Convert a file you trust once, on a "
            "machine you trust (pandas.read_pickle(p).to_parquet('t.parquet')), and give the "
            "Parquet/CSV/FITS table instead")
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    try:
        if name.endswith(".parquet"):
            return _integers_as_text(pd.read_parquet(path), path, wanted)
        if name.endswith(FITS_SUFFIXES):
            return _integers_as_text(_read_fits_table(path), path, wanted)
        sep = "\t" if name.endswith((".tsv", ".tab")) else ","
        if text_columns:
            header = pd.read_csv(path, sep=sep, nrows=0,
                                 **{k: v for k, v in csv_kwargs.items() if k != "dtype"})
            dtype = csv_kwargs.pop("dtype", None)
            text = {c: str for c in header.columns if wanted(c)}
            csv_kwargs["dtype"] = dtype if (dtype is not None and not isinstance(dtype, dict)) \
                else {**(dtype or {}), **text}
        return pd.read_csv(path, sep=sep, **csv_kwargs)
    except (FileNotFoundError, ValueError) as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"cannot read table {path}: {e}") from e
    except Exception as e:  # parser errors of pandas/pyarrow/astropy: re-raised with the file
        raise ValueError(f"cannot read table {path}: {type(e).__name__}: {e}") from e


class UnsafeTableError(ValueError):
    """A table that could only be read by executing a Python pickle."""


def table_format(path: str | os.PathLike) -> str:
    """``parquet``, ``csv`` or ``fits`` (what :func:`write_table` writes) from a file name.

    Raises:
        ValueError: any other suffix.
    """
    name = os.fspath(path).lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".fits", ".fit")):
        return "fits"
    raise ValueError(f"output {path}: unknown format; use .parquet (default), .csv or .fits")


def write_table(df: pd.DataFrame, path: str | os.PathLike, fmt: Optional[str] = None) -> Path:
    """Write ``df`` to ``path`` atomically (module docstring); ``fmt`` (one of
    ``WRITE_FORMATS``) defaults to :func:`table_format` of the name. Returns ``path``."""
    path = Path(path)
    fmt = fmt or table_format(path)
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with naming_path(path):  # a full disk names the table it could not write
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "parquet":
                df.to_parquet(tmp, index=False)
            elif fmt == "csv":
                df.to_csv(tmp, index=False)
            else:
                # FITS has no nullable integers: Int64 columns become float64 (NaN if missing).
                table = Table.from_pandas(df.astype({c: "float64" for c in df.columns
                                                     if str(df[c].dtype) == "Int64"}))
                table.write(tmp, format="fits", overwrite=True)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                   headers: Optional[Sequence[str]] = None,
                   formats: Optional[Dict[str, Callable[[Any], str]]] = None) -> str:
    """A GitHub Markdown table (ending in a newline) of ``rows`` (dicts) in ``columns`` order.

    Args:
        rows: one mapping per row; a missing key is an empty cell.
        columns: the keys shown, in order.
        headers: the header cells (default: the column keys).
        formats: per column, a function value -> cell text (default ``str``; None -> "").

    ``|`` in a cell is escaped so that it cannot split the cell.
    """
    headers = list(columns if headers is None else headers)
    if len(headers) != len(columns):
        raise ValueError(f"{len(headers)} headers for {len(columns)} columns")
    formats = formats or {}

    def cell(row, col) -> str:
        value = row.get(col)
        text = formats[col](value) if col in formats else ("" if value is None else str(value))
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(row, c) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _integers_as_text(df: pd.DataFrame, path: Path, wanted: Callable[[str], bool]
                      ) -> pd.DataFrame:
    """Integer columns named by ``wanted`` as exact decimal text (missing: NaN). A Parquet
    integer column with nulls reaches pandas as float64 (precision lost): read it again from
    Arrow, where it is still exact."""
    for col in [c for c in df.columns if isinstance(c, str) and wanted(c)]:
        kind = df[col].dtype.kind
        if kind in "iu":  # int64, or FITS's nullable Int64 (exact)
            values = df[col].tolist()
        elif kind == "f" and path.name.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            column = pq.read_table(path, columns=[col]).column(col)
            if not str(column.type).startswith(("int", "uint")):
                continue  # a float column holds no exact integers to recover
            values = column.to_pylist()
        else:
            continue
        df[col] = pd.Series([float("nan") if v is None or v is pd.NA else str(int(v))
                             for v in values], index=df.index, dtype=object)
    return df


def _read_fits_table(path: Path) -> pd.DataFrame:
    table = Table.read(path)
    # Multidimensional columns cannot live in a DataFrame; they are not needed here.
    names = [n for n in table.colnames if len(table[n].shape) <= 1]
    df = table[names].to_pandas()
    for col in df.columns:  # FITS strings arrive as bytes on some astropy versions
        if df[col].dtype == object and len(df) and isinstance(df[col].iloc[0], bytes):
            df[col] = df[col].str.decode("utf-8").str.strip()
    return df
