"""The one table writer (Parquet/CSV/FITS by extension, atomic) and the Markdown helper."""
import os

import numpy as np
import pandas as pd
import pytest

from clump_d2.data.tables import markdown_table, read_table, table_format, write_table


def _frame():
    return pd.DataFrame({"galaxy_id": ["a", "b", "c"], "n": pd.array([1, None, 3], "Int64"),
                         "score": [0.5, np.nan, 0.25]})


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.fits"])
def test_write_table_round_trips_each_format(tmp_path, name):
    path = write_table(_frame(), tmp_path / "sub" / name)
    assert path == tmp_path / "sub" / name and table_format(path) == name.split(".")[1]
    back = read_table(path)
    assert list(back["galaxy_id"]) == ["a", "b", "c"]
    np.testing.assert_allclose(back["score"].to_numpy(float), [0.5, np.nan, 0.25])
    np.testing.assert_allclose(back["n"].to_numpy(float), [1.0, np.nan, 3.0])  # FITS: float
    assert os.listdir(path.parent) == [name]  # no temporary file left behind


def test_write_table_is_atomic_and_refuses_unknown_formats(tmp_path, monkeypatch):
    target = tmp_path / "t.csv"
    write_table(pd.DataFrame({"x": [1]}), target)
    with pytest.raises(ValueError, match="unknown format"):
        write_table(_frame(), tmp_path / "t.xlsx")
    with pytest.raises(ValueError, match="unknown table format 'xml'"):
        write_table(_frame(), tmp_path / "t.csv", fmt="xml")

    def killed(self, path, **kwargs):  # the writer dies half-way
        open(path, "w").write("x\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", killed)
    with pytest.raises(KeyboardInterrupt):
        write_table(_frame(), target)
    assert target.read_text() == "x\n1\n"  # the old table, whole
    assert os.listdir(tmp_path) == ["t.csv"]


def test_markdown_table():
    rows = [{"m": "net", "c": 0.5}, {"m": "a|b", "c": None}]
    assert markdown_table(rows, ["m", "c"]) == (
        "| m | c |\n|---|---|\n| net | 0.5 |\n| a\\|b |  |\n")
    text = markdown_table(rows, ["m", "c"], headers=["method", "C"],
                          formats={"c": lambda v: "undefined" if v is None else f"{v:.2f}"})
    assert text.splitlines() == ["| method | C |", "|---|---|", "| net | 0.50 |",
                                 "| a\\|b | undefined |"]
    with pytest.raises(ValueError, match="1 headers for 2 columns"):
        markdown_table(rows, ["m", "c"], headers=["m"])


@pytest.mark.parametrize("name", ["t.pkl", "t.PICKLE", "t.pkl.gz", "t.joblib"])
def test_pickled_tables_are_refused_before_any_code_runs(tmp_path, name):
    """A pickle that would create a file when loaded: refused, naming the risk, file untouched
    by any unpickler (the marker never appears)."""
    import pickle

    from clump_d2.data.tables import UnsafeTableError

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / name
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(UnsafeTableError, match=rf"{name} is a Python pickle: pickles are not "
                                               "read, because reading one would run any code"):
        read_table(path)
    assert not marker.exists()
    with pytest.raises(UnsafeTableError):  # refused even before checking that it exists
        read_table(tmp_path / "missing.pkl")


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.fits"])
def test_full_disk_names_the_table_and_keeps_the_old_one(tmp_path, monkeypatch, name):
    """ENOSPC from the writer (pyarrow, pandas, astropy do not say which file) or from the
    rename: the error names the table being written and keeps errno; the old table stays."""
    import errno

    target = tmp_path / name
    write_table(_frame(), target)
    before = target.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    for where in ("replace", "write"):
        with monkeypatch.context() as m:
            if where == "replace":
                m.setattr(os, "replace", full)
            else:
                for method in ("to_parquet", "to_csv"):
                    m.setattr(pd.DataFrame, method, full)
                m.setattr("astropy.table.Table.write", full)
            with pytest.raises(OSError) as e:
                write_table(_frame().assign(score=1.0), target)
        assert e.value.errno == errno.ENOSPC
        assert str(target) in str(e.value) and "No space left on device" in str(e.value)
        assert target.read_bytes() == before and os.listdir(tmp_path) == [name]
