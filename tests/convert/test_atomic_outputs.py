"""Converter outputs survive kills and hostile input: atomic writes, splits as one unit, no
stale splits, names that stay inside the dataset, a mistyped --images folder refused."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clump_d2.convert.coco_writer import (atomic_write_bytes, atomic_write_text,
                                          is_safe_relative_name)
from clump_d2.convert.layout import place_images, recover_dataset
from clump_d2.data.datasets import register_all_clump_datasets

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(load_tool):
    """tools/convert_clumpscout.py, loaded by the shared ``load_tool`` fixture."""
    return load_tool("convert_clumpscout")


def _tables(root: Path, n=8, size=48, key_of=None):
    """n tiny PNGs and a consensus table with one 6 px box per galaxy in its 24 px crop."""
    png = root / "png"
    png.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        key = key_of(i) if key_of else str(700 + i)
        if not key.startswith(".."):
            Image.fromarray(np.full((size, size, 3), 40 + i, np.uint8)).save(png / f"{key}.png")
        rows.append([9000 + i, key, 1, 4.0 + i, 10.0 + i, 5.0, 11.0])
    table = root / "t.csv"
    pd.DataFrame(rows, columns=["image_id", "local_ids", "label", "x1", "x2", "y1",
                                "y2"]).to_csv(table, index=False)
    return table, png


GEOMETRY = ["--image-size", "48x48", "--crop-offset", "12", "12", "--crop-size", "24x24"]


def _snapshot(folder: Path):
    """The visible files of ``folder`` (``annotations/.conversion``: a run's token)."""
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())
            if f.is_file() and not f.name.startswith(".")}


# A child process that runs the converter and SIGKILLs itself in the middle of writing its
# N-th JSON file under the dataset (half of the text written): a kill at the worst moment.
_KILLER = r"""
import builtins, io, os, signal, sys, runpy
N, out = int(sys.argv[1]), os.path.realpath(sys.argv[2])
real_open, count = io.open, [0]

class Half:
    def __init__(self, f):
        self.f = f
    def write(self, text):
        self.f.write(text[: len(text) // 2])
        self.f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, k):
        return getattr(self.f, k)
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.f.close()

def killing_open(file, mode="r", *a, **k):
    f = real_open(file, mode, *a, **k)
    path = os.path.realpath(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else ""
    if "w" in mode and path.startswith(out) and ".json" in os.path.basename(path):
        count[0] += 1
        if count[0] == N:
            return Half(f)
    return f

builtins.open = io.open = killing_open
sys.argv = ["convert_clumpscout.py"] + sys.argv[3:]
runpy.run_path(%r, run_name="__main__")
""" % str(REPO / "tools" / "convert_clumpscout.py")


@pytest.mark.parametrize("nth_file", [1, 3])
def test_sigkill_during_write_keeps_previous_dataset(tmp_path, nth_file, cli):
    """Killed while writing the first file, or the second split: the old splits stay whole
    (before: a truncated train.json, or train in the new frame beside val in the old)."""
    table, png = _tables(tmp_path / "src")
    out = tmp_path / f"kill{nth_file}"
    table2 = tmp_path / "t2.csv"
    df = pd.read_csv(table)
    # a good dataset of two splits: train (4 galaxies) and val (the other 4)
    df.iloc[4:].to_csv(table2, index=False)
    df.iloc[:4].to_csv(table, index=False)
    assert cli.main(["consensus", "--table", f"train={table}", "--table", f"val={table2}",
                         "--images", str(png), "--out", str(out), "--link", "none",
                         *GEOMETRY]) == 0
    before = _snapshot(out / "annotations")
    assert set(before) == {"train.json", "train.report.json", "val.json", "val.report.json"}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(nth_file), str(out), "consensus", "--table",
         f"train={table}", "--table", f"val={table2}", "--images", str(png), "--out", str(out),
         "--link", "none", "--frame", "full", "--image-size", "48x48", "--crop-offset", "12",
         "12", "--crop-size", "24x24"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # really killed
    assert _snapshot(out / "annotations") == before
    names = register_all_clump_datasets(tmp_path, synthetic=False)
    assert {f"kill{nth_file}_train", f"kill{nth_file}_val"} <= set(names)
    # the next run cleans up what the killed one left, then writes the new frame
    assert cli.main(["consensus", "--table", f"train={table}", "--table", f"val={table2}",
                         "--images", str(png), "--out", str(out), "--link", "none", "--frame",
                         "full", *GEOMETRY]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["annotations"]
    for split in ("train", "val"):
        coco = json.loads((out / "annotations" / f"{split}.json").read_text())
        assert {im["width"] for im in coco["images"]} == {48}


def test_kill_between_the_two_renames_is_repaired(tmp_path):
    ds = tmp_path / "ds"
    (ds / ".annotations.old").mkdir(parents=True)
    (ds / ".annotations.old" / "all.json").write_text("{}")
    (ds / ".annotations.staging").mkdir()
    recover_dataset(ds)
    assert sorted(p.name for p in ds.iterdir()) == ["annotations"]
    assert (ds / "annotations" / "all.json").read_text() == "{}"


def test_atomic_write_text_replaces_whole_file(tmp_path):
    f = tmp_path / "a" / "x.json"
    atomic_write_text(f, "old")
    atomic_write_text(f, "new")
    assert f.read_text() == "new" and sorted(p.name for p in f.parent.iterdir()) == ["x.json"]


def test_atomic_write_bytes_writes_exact_bytes_and_text_is_utf8(tmp_path):
    f = tmp_path / "b" / "img.jpg"
    data = bytes(range(256)) * 3
    assert atomic_write_bytes(f, data) == f and f.read_bytes() == data
    atomic_write_text(f, "µ")
    assert f.read_bytes() == "µ".encode("utf-8")
    assert sorted(p.name for p in f.parent.iterdir()) == ["img.jpg"]


def test_resplit_into_fewer_splits_leaves_no_stale_split(tmp_path, cli):
    table, png = _tables(tmp_path / "src", n=12)
    convert = cli
    ds = tmp_path / "datasets" / "rs"
    assert convert.main(["consensus", "--table", f"all={table}", "--images", str(png), "--out",
                         str(ds), "--link", "none", *GEOMETRY]) == 0
    assert convert.main(["split", "--dataset", str(ds), "--fractions", "train=0.5", "val=0.25",
                         "test=0.25"]) == 0
    assert (ds / "annotations" / "test.json").is_file()
    assert convert.main(["split", "--dataset", str(ds), "--fractions", "train=0.5", "val=0.5",
                         "--seed", "1"]) == 0
    assert sorted(p.name for p in (ds / "annotations").glob("*.json")
                  if "report" not in p.name) == ["all.json", "train.json", "val.json"]
    names = register_all_clump_datasets(tmp_path / "datasets", synthetic=False)
    assert "rs_test" not in names and {"rs_all", "rs_train", "rs_val"} <= set(names)
    ids = {s: {im["galaxy_id"] for im in json.loads(
        (ds / "annotations" / f"{s}.json").read_text())["images"]} for s in ("train", "val")}
    assert not ids["train"] & ids["val"] and len(ids["train"] | ids["val"]) == 12
    # a re-converted "all" removes the splits made from the old one
    assert convert.main(["consensus", "--table", f"all={table}", "--images", str(png), "--out",
                         str(ds), "--link", "none", *GEOMETRY]) == 0
    assert sorted(p.name for p in (ds / "annotations").glob("*.json")) == [
        "all.json", "all.report.json"]


def test_split_refuses_to_overwrite_its_input(tmp_path, cli):
    table, png = _tables(tmp_path / "src", n=4)
    ds = tmp_path / "ds"
    assert cli.main(["consensus", "--table", f"all={table}", "--out", str(ds), "--link",
                         "none", *GEOMETRY]) == 0
    with pytest.raises(SystemExit, match="input split"):
        cli.main(["split", "--dataset", str(ds), "--fractions", "all=0.5", "b=0.5"])


def test_names_from_labels_never_leave_the_output_folder(tmp_path, cli):
    """local_ids "../../../victim" must not make place_images replace a file outside --out."""
    src = tmp_path / "s1" / "s2"
    table, png = _tables(src, n=4, key_of=lambda i: "../../../victim" if i == 0 else str(i))
    (tmp_path / "victim.png").write_bytes(b"attacker")  # what the name would link to
    out = tmp_path / "d" / "o1" / "o2"
    victim = tmp_path / "d" / "victim.png"  # out/images/../../../victim.png
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_bytes(b"precious")
    assert cli.main(["consensus", "--table", f"all={table}", "--images", str(png), "--out",
                         str(out), *GEOMETRY]) == 0
    assert victim.read_bytes() == b"precious" and not victim.is_symlink()
    report = json.loads((out / "annotations" / "all.report.json").read_text())
    assert report["counts"]["images"]["dropped"] == {"unsafe_file_name": 1}
    assert report["counts"]["images"]["kept"] == 3
    # place_images itself refuses such names, whoever built the COCO dict
    coco = {"images": [{"id": 1, "file_name": "../../victim.png"}], "annotations": []}
    with pytest.raises(ValueError, match="not a relative path"):
        place_images(coco, png, out)
    assert victim.read_bytes() == b"precious"
    for name, ok in [("a/b.png", True), ("/etc/passwd", False), ("a/../../b", False),
                     ("", False), ("..", False), ("C:/x", False)]:
        assert is_safe_relative_name(name) is ok, name


def test_symlinked_folder_inside_images_cannot_lead_out(tmp_path):
    png = tmp_path / "png"
    (png / "sub").mkdir(parents=True)
    (png / "sub" / "x.png").write_bytes(b"img")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"precious")
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "images" / "sub").symlink_to(outside)
    with pytest.raises(ValueError, match="leads outside"):
        place_images({"images": [{"id": 1, "file_name": "sub/x.png"}]}, png, tmp_path / "ds")
    assert (outside / "x.png").read_bytes() == b"precious"


def test_mistyped_images_folder_exits_nonzero_and_keeps_dataset(tmp_path, cli):
    table, png = _tables(tmp_path / "src", n=6)
    ds = tmp_path / "ds"
    convert = cli
    assert convert.main(["consensus", "--table", f"all={table}", "--images", str(png), "--out",
                         str(ds), *GEOMETRY]) == 0
    before = _snapshot(ds / "annotations")
    with pytest.raises(SystemExit) as e:
        convert.main(["consensus", "--table", f"all={table}", "--images", str(png) + "_typo",
                      "--out", str(ds), *GEOMETRY])
    assert e.value.code not in (0, None) and "no such folder" in str(e.value.code)
    assert _snapshot(ds / "annotations") == before
    # a folder holding few of the images: most galaxies would be dropped -> needs --force
    for f in sorted(png.iterdir())[:5]:
        f.unlink()
    with pytest.raises(SystemExit) as e:
        convert.main(["consensus", "--table", f"all={table}", "--images", str(png), "--out",
                      str(ds), *GEOMETRY])
    assert "only 1 of 6 images kept" in str(e.value.code) and "--force" in str(e.value.code)
    assert _snapshot(ds / "annotations") == before
    assert convert.main(["consensus", "--table", f"all={table}", "--images", str(png), "--out",
                         str(ds), "--force", *GEOMETRY]) == 0
    coco = json.loads((ds / "annotations" / "all.json").read_text())
    assert len(coco["images"]) == 1


def test_float_options_are_parsed_as_floats(cli):
    """--rotation-deg (and every float option of the catalogue converter) arrives as a float,
    not as text."""
    args = cli.build_parser().parse_args([
        "catalog", "--clumps", "c.csv", "--galaxies", "g.csv", "--images", "im", "--out", "o",
        "--rotation-deg", "12.5", "--pixel-scale", "0.396", "--psf-fwhm-arcsec", "1.2"])
    assert args.rotation_deg == 12.5 and isinstance(args.rotation_deg, float)
    assert args.pixel_scale == 0.396 and args.psf_fwhm_arcsec == 1.2
    assert isinstance(cli.build_parser().parse_args([
        "catalog", "--clumps", "c", "--galaxies", "g", "--images", "i", "--out", "o"]
    ).rotation_deg, float)


# A child process that runs the converter and SIGKILLs itself at one of the two renames that
# swap the new annotations in (1: annotations -> .annotations.old, 2: the staging folder ->
# annotations): after the images were placed, before (1) or between (2) the renames.
_RENAME_KILLER = r"""
import os, signal, sys, runpy
which, real_rename = sys.argv[1], os.rename

def killing_rename(src, dst, *a, **k):
    names = os.path.basename(os.fspath(src)), os.path.basename(os.fspath(dst))
    if names == {"1": ("annotations", ".annotations.old"),
                 "2": (".annotations.staging", "annotations")}[which]:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst, *a, **k)

os.rename = killing_rename
sys.argv = ["convert_clumpscout.py"] + sys.argv[2:]
runpy.run_path(%r, run_name="__main__")
""" % str(REPO / "tools" / "convert_clumpscout.py")


@pytest.mark.parametrize("rename", ["1", "2"])
def test_kill_between_image_placement_and_annotation_swap_is_undone_by_any_verb(
        tmp_path, rename, cli):
    """A re-conversion from another image folder (same names, other pixels) killed after its
    images were copied in but before its annotations were: the next verb, ``split`` here,
    puts the old images back under the old annotations (before: new images under old
    annotations; and after a kill between the renames ``split`` failed, finding no
    annotations)."""
    table, png_a = _tables(tmp_path / "a", n=4)
    png_b = tmp_path / "b"
    png_b.mkdir()
    for f in sorted(png_a.iterdir()):
        Image.fromarray(np.full((48, 48, 3), 200, np.uint8)).save(png_b / f.name)
    ds = tmp_path / "ds"
    assert cli.main(["consensus", "--table", f"all={table}", "--images", str(png_a), "--out",
                     str(ds), "--link", "copy", *GEOMETRY]) == 0
    images_before = _snapshot(ds / "images")
    annotations_before = _snapshot(ds / "annotations")
    assert images_before == _snapshot(png_a) and len(images_before) == 4
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _RENAME_KILLER, rename, "consensus", "--table", f"all={table}",
         "--images", str(png_b), "--out", str(ds), "--link", "copy", "--frame", "full",
         *GEOMETRY], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # really killed, images already copied
    assert cli.main(["split", "--dataset", str(ds), "--fractions", "train=0.5",
                     "val=0.5"]) == 0
    assert _snapshot(ds / "images") == images_before  # the old pixels, not png_b's
    after = _snapshot(ds / "annotations")
    assert {k: after[k] for k in annotations_before} == annotations_before
    assert sorted(p.name for p in ds.iterdir()) == ["annotations", "images"]
    # the next full run places the new images with the new annotations
    assert cli.main(["consensus", "--table", f"all={table}", "--images", str(png_b), "--out",
                     str(ds), "--link", "copy", "--frame", "full", *GEOMETRY]) == 0
    assert _snapshot(ds / "images") == _snapshot(png_b)
    assert sorted(p.name for p in ds.iterdir()) == ["annotations", "images"]


def test_header_only_input_is_an_error_and_keeps_the_dataset(tmp_path, cli):
    """A table with its header and no rows replaced the split with nothing (exit 0). Now it is
    an error naming the file, the dataset is kept; --force writes the empty split."""
    table, png = _tables(tmp_path / "src", n=4)
    ds = tmp_path / "ds"
    assert cli.main(["consensus", "--table", f"all={table}", "--out", str(ds), "--link",
                     "none", *GEOMETRY]) == 0
    before = _snapshot(ds / "annotations")
    empty = tmp_path / "empty.csv"
    empty.write_text(table.read_text().splitlines()[0] + "\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["consensus", "--table", f"all={empty}", "--out", str(ds), "--link", "none",
                  *GEOMETRY])
    assert f"no images read from {empty}" in str(e.value.code)
    assert _snapshot(ds / "annotations") == before
    # an empty COCO input to split, likewise
    assert cli.main(["consensus", "--table", f"none={empty}", "--out", str(ds), "--link",
                     "none", "--force", *GEOMETRY]) == 0
    assert json.loads((ds / "annotations" / "none.json").read_text())["images"] == []
    with pytest.raises(SystemExit, match=r"none\.json has no images"):
        cli.main(["split", "--dataset", str(ds), "--input", "none"])
    assert {k: v for k, v in _snapshot(ds / "annotations").items()
            if not k.startswith("none.")} == before


def test_split_names_are_plain_identifiers(tmp_path, cli):
    """``../../x`` as a split name would write outside the dataset; ``all.report`` would
    overwrite the report of split ``all``: refused before any work."""
    table, png = _tables(tmp_path / "src", n=4)
    ds = tmp_path / "ds"
    for argv in (["consensus", "--table", f"../../x={table}", "--out", str(ds)],
                 ["consensus", "--table", f"all.report={table}", "--out", str(ds)],
                 ["split", "--dataset", str(ds), "--fractions", "../x=1"]):
        with pytest.raises(SystemExit, match="is not a plain split name"):
            cli.main(argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    """ENOSPC while the converter writes a JSON (flushing it to disk) names that file and keeps
    the old one; a conversion run on a full disk says which file it could not write."""
    import errno

    target = tmp_path / "annotations" / "all.json"
    atomic_write_text(target, "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic_write_text(target, "new")
    assert e.value.errno == errno.ENOSPC and str(e.value) == (
        f"[Errno {errno.ENOSPC}] cannot write {target}: No space left on device")
    assert target.read_text() == "old" and os.listdir(target.parent) == ["all.json"]


@pytest.mark.parametrize("swapped", [False, True])
def test_image_journal_is_undone_or_finished_by_the_annotation_token(tmp_path, swapped):
    """The repair's two outcomes: annotations without the journal's token (the swap never
    happened): replaced images back, new ones removed; with it: placement kept. Either way no
    journal or backup is left (nor a backup a kill left after the journal was deleted)."""
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / ".images.replaced").mkdir()
    (ds / "annotations").mkdir()
    (ds / "images" / "a.png").write_text("new a")
    (ds / ".images.replaced" / "a.png").write_text("old a")
    (ds / "images" / "b.png").write_text("new b")
    (ds / "images" / "c.png").write_text("untouched c")
    (ds / ".images.journal.json").write_text(json.dumps(
        {"token": "t1", "placed": [["a.png", True], ["b.png", False]]}))
    (ds / "annotations" / ".conversion").write_text("t1" if swapped else "t0")
    recover_dataset(ds)
    assert sorted(p.name for p in ds.iterdir()) == ["annotations", "images"]
    images = {p.name: p.read_text() for p in (ds / "images").iterdir()}
    assert images == ({"a.png": "new a", "b.png": "new b", "c.png": "untouched c"} if swapped
                      else {"a.png": "old a", "c.png": "untouched c"})
    (ds / ".images.replaced").mkdir()
    recover_dataset(ds)
    assert sorted(p.name for p in ds.iterdir()) == ["annotations", "images"]
