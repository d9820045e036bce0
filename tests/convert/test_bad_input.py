"""Bad input to the converters: every bad image, row or value is a counted drop with its own
reason, or an error naming the file, the row/line and the column."""
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clump_d2.convert.aggregation import SubjectOptions, convert_export
from clump_d2.convert.catalog import CatalogOptions, convert_catalog
from clump_d2.convert.consensus import ConsensusOptions, convert_consensus_table
from clump_d2.convert.zooniverse import ExportOptions, read_export

COLUMNS = ["image_id", "local_ids", "label", "x1", "x2", "y1", "y2"]


def _bad_images(folder: Path, names):
    """names[0]: a good PNG; then a 0-byte file, a truncated PNG, text saved as .png."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / names[0]
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    (folder / names[1]).write_bytes(b"")
    (folder / names[2]).write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / names[3]).write_text("<html>404 Not Found</html>")


def test_consensus_drops_undecodable_images(tmp_path):
    _bad_images(tmp_path / "png", ["1.png", "2.png", "3.png", "4.png"])
    path = tmp_path / "t.csv"
    pd.DataFrame([[s, s, 1, 10, 20, 10, 20] for s in (1, 2, 3, 4)] + [[2, 2, 1, 30, 40, 30, 40]],
                 columns=COLUMNS).to_csv(path, index=False)
    coco, report = convert_consensus_table(path, image_dir=tmp_path / "png")
    c = report.as_dict()["counts"]
    assert c["images"]["dropped"] == {"undecodable_image": 3} and c["images"]["kept"] == 1
    assert c["boxes"]["dropped"] == {"undecodable_image": 4} and c["boxes"]["kept"] == 1
    assert [im["id"] for im in coco.images] == [1]


def test_export_drops_undecodable_images(synthetic_export, tmp_path):
    export, *_ = synthetic_export
    _bad_images(tmp_path / "img", ["40000001.png", "40000002.png", "40000003.png",
                                   "40000004.png"])
    coco, report = convert_export(export, subject_options=SubjectOptions(
        default_psf_fwhm_px=6.0), image_dir=tmp_path / "img")
    c = report.as_dict()["counts"]
    assert c["subjects"]["kept"] == 1
    assert c["subjects"]["dropped"] == {"missing_image": 26, "undecodable_image": 3}
    assert [im["id"] for im in coco.images] == [40000001]


def test_non_numeric_coordinate_is_a_counted_drop(tmp_path, caplog):
    path = tmp_path / "t.csv"
    pd.DataFrame([[1, 1, 1, 10, 20, 10, 20], [1, 1, 1, "abc", 40, 30, 40],
                  [2, 2, 1, 10, 20, 10, 20]], columns=COLUMNS).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        coco, report = convert_consensus_table(path)  # default mode: drop, counted
    c = report.as_dict()["counts"]["boxes"]
    assert c["dropped"] == {"nan_coordinates": 1} and c["kept"] == 2
    assert f"{path}: row 2 (line 3): column 'x1'" in caplog.text
    with pytest.raises(ValueError, match=r"t\.csv: row 2 \(line 3\): column 'x1'"):
        convert_consensus_table(path, ConsensusOptions(on_bad_row="error"))


def test_mixed_numeric_and_text_subject_ids_name_rows(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame([[5, 5, 1, 10, 20, 10, 20], ["abc", "k", 1, 10, 20, 10, 20]],
                 columns=COLUMNS).to_csv(path, index=False)
    with pytest.raises(ValueError) as e:
        convert_consensus_table(path)
    msg = str(e.value)
    assert "t.csv" in msg and "column 'image_id'" in msg
    assert "'abc', row 2, line 3" in msg and "'5', row 1, line 2" in msg
    # all text is fine: running image ids
    pd.DataFrame([["a", "a", 1, 10, 20, 10, 20], ["b", "b", 1, 10, 20, 10, 20]],
                 columns=COLUMNS).to_csv(path, index=False)
    coco, _ = convert_consensus_table(path)
    assert sorted(im["id"] for im in coco.images) == [1, 2]


@pytest.mark.parametrize("width", [-400, "wide"])
def test_bad_natural_width_is_a_counted_drop_naming_line(tmp_path, width):
    meta = {"subject_dimensions": [{"naturalWidth": width, "naturalHeight": 400}]}
    good = {"subject_dimensions": [{"naturalWidth": 400, "naturalHeight": 400}]}
    ann = json.dumps([{"task": "T0", "value": [{"x": 10, "y": 10, "tool": 0}]}])
    rows = [{"classification_id": i, "user_name": f"u{i}", "metadata": json.dumps(m),
             "annotations": ann, "subject_data": "{}", "subject_ids": "7"}
            for i, m in ((1, good), (2, meta))]
    path = tmp_path / "export.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    cls, _, _ = read_export(path)
    assert [c.classification_id for c in cls] == ["1"] and cls[0].natural_size == (400, 400)
    with pytest.raises(ValueError) as e:
        read_export(path, ExportOptions(on_bad_row="error"))
    msg = str(e.value)
    assert "export.csv: line 3" in msg and "column 'metadata'" in msg
    assert "naturalWidth" in msg and repr(width) in msg
    coco, report = convert_export(path, subject_options=SubjectOptions(default_psf_fwhm_px=5.0))
    assert report.as_dict()["counts"]["classifications"]["dropped"] == {"bad_natural_size": 1}
    assert [im["width"] for im in coco.images] == [400]  # never -400


def _catalog_inputs(tmp_path, gal_ra, clump_ra=(10.0, 10.0, 10.0)):
    images = tmp_path / "img"
    images.mkdir(exist_ok=True)
    for g in "abc":
        Image.new("RGB", (50, 50)).save(images / f"{g}.png")
    pd.DataFrame({"id": ["a", "b", "c"], "clump_ra": list(clump_ra),
                  "clump_dec": [0.0, 0.0, 0.0]}).to_csv(tmp_path / "cl.csv", index=False)
    pd.DataFrame({"survey_id": ["a", "b", "c"], "RA": list(gal_ra), "DEC": [0.0, 0.0, 95.0],
                  "PETROR90_R": [10.0] * 3}).to_csv(tmp_path / "gal.csv", index=False)
    return images, CatalogOptions(image_template="{galaxy_id}.png", flux_column=None)


def test_galaxy_without_sky_centre_is_dropped_with_own_reason(tmp_path, caplog):
    """NaN or text centre RA, or Dec > 90: the galaxy is dropped (not kept as a clump-free
    negative) and its clumps are counted under the galaxy's reason."""
    for gal_ra in ([10.0, np.nan, 10.0], [10.0, "ten", 10.0]):
        images, options = _catalog_inputs(tmp_path, gal_ra)
        with caplog.at_level(logging.WARNING):
            coco, report = convert_catalog(tmp_path / "cl.csv", tmp_path / "gal.csv", images,
                                           options)
        c = report.as_dict()["counts"]
        assert c["galaxies"]["dropped"] == {"bad_centre": 2} and c["galaxies"]["kept"] == 1
        assert c["clumps"]["dropped"] == {"galaxy_bad_centre": 2} and c["clumps"]["kept"] == 1
        assert [im["galaxy_id"] for im in coco.images] == ["a"]
        assert "gal.csv: row 2 (galaxy b): columns 'RA'/'DEC'" in caplog.text
        assert "gal.csv: row 3 (galaxy c)" in caplog.text


def test_text_clump_ra_is_a_counted_drop_naming_row_and_column(tmp_path, caplog):
    images, options = _catalog_inputs(tmp_path, [10.0, 10.0, 10.0], clump_ra=[10.0, "x", 10.0])
    with caplog.at_level(logging.WARNING):
        coco, report = convert_catalog(tmp_path / "cl.csv", tmp_path / "gal.csv", images,
                                       options)
    assert report.as_dict()["counts"]["clumps"]["dropped"] == {"nan_coordinates": 1,
                                                               "galaxy_bad_centre": 1}
    assert "cl.csv: row 2: columns 'clump_ra'/'clump_dec' = ('x', 0.0)" in caplog.text


def test_galaxy_id_column_in_galaxy_table(tmp_path):
    images, options = _catalog_inputs(tmp_path, [10.0, 10.0, 10.0])
    gal = pd.read_csv(tmp_path / "gal.csv")
    gal["galaxy_id"] = ["x1", "x2", "x3"]  # a column named like the template's field
    gal.to_csv(tmp_path / "gal.csv", index=False)
    coco, report = convert_catalog(tmp_path / "cl.csv", tmp_path / "gal.csv", images, options)
    assert [im["file_name"] for im in coco.images] == ["a.png", "b.png"]  # the join id wins
    bad = CatalogOptions(image_template="{nosuch}.png", flux_column=None)
    with pytest.raises(ValueError, match=r"gal\.csv: row 1 \(galaxy a\): image template "
                                         r"'\{nosuch\}\.png'"):
        convert_catalog(tmp_path / "cl.csv", tmp_path / "gal.csv", images, bad)


def test_truncated_coco_input_to_split_names_file_line_column(tmp_path, load_tool):
    ann = tmp_path / "ds" / "annotations"
    ann.mkdir(parents=True)
    (ann / "all.json").write_text('{"images": [{"id": 1, "file_name": "a.png"}, {"id"')
    tool = load_tool("convert_clumpscout")
    with pytest.raises(SystemExit) as e:
        tool.main(["split", "--dataset", str(tmp_path / "ds")])
    msg = str(e.value.code)
    assert "all.json" in msg and "line 1 column" in msg and "truncated" in msg
    assert sorted(p.name for p in ann.iterdir()) == ["all.json"]  # nothing written


def test_image_check_uses_the_network_reader(tmp_path):
    """A 16-bit PNG is usable (the reader scales it); a floating-point TIFF, which the reader
    refuses, is a drop with its reason."""
    from clump_d2.convert.images import image_problem

    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(tmp_path / "deep.png")
    assert image_problem(tmp_path / "deep.png") is None
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "float.tif")
    assert "a 'F' image" in image_problem(tmp_path / "float.tif")
    (tmp_path / "text.png").write_text("not an image")
    assert image_problem(tmp_path / "text.png").startswith("does not decode")


def test_impossible_ra_dec_are_counted_drops_naming_row_and_column(tmp_path, caplog):
    """RA 400 (clump or galaxy centre) is refused by the one sky check the catalogue's inputs
    use (clump_d2.data.sky.sky_problem): a counted drop naming file, row and column."""
    images, options = _catalog_inputs(tmp_path, [10.0, 400.0, 10.0],
                                      clump_ra=[400.0, 10.0, 10.0])
    with caplog.at_level(logging.WARNING):
        coco, report = convert_catalog(tmp_path / "cl.csv", tmp_path / "gal.csv", images,
                                       options)
    c = report.as_dict()["counts"]
    assert c["galaxies"]["dropped"] == {"bad_centre": 2} and c["galaxies"]["kept"] == 1
    assert c["clumps"]["dropped"] == {"impossible_coordinates": 1, "galaxy_bad_centre": 2}
    assert coco.annotations == []
    assert ("cl.csv: row 1: columns 'clump_ra'/'clump_dec' = (400.0, 0.0): column 'clump_ra': "
            "ra 400.0 is impossible (must be in [0, 360))") in caplog.text
    assert ("gal.csv: row 2 (galaxy b): columns 'RA'/'DEC' = (400.0, 0.0) are not a sky "
            "position (column 'RA': ra 400.0 is impossible") in caplog.text


def test_catalog_join_keeps_19_digit_ids_beside_a_blank(tmp_path):
    """A blank cell in the clump table's galaxy column made the column float: every 19-digit
    id changed and no clump found its galaxy. The ids are joined as the files' text."""
    ids = ["1237648720693755918", "1237648720693755919"]
    images = tmp_path / "img"
    images.mkdir()
    for g in ids:
        Image.new("RGB", (50, 50)).save(images / f"{g}.png")
    (tmp_path / "cl.csv").write_text("id,clump_ra,clump_dec\n"
                                     f"{ids[0]},10.0,0.0\n{ids[1]},20.0,0.0\n,20.0,0.0\n")
    (tmp_path / "gal.csv").write_text("survey_id,RA,DEC,PETROR90_R\n"
                                      f"{ids[0]},10.0,0.0,10.0\n{ids[1]},20.0,0.0,10.0\n")
    coco, report = convert_catalog(tmp_path / "cl.csv", tmp_path / "gal.csv", images,
                                   CatalogOptions(image_template="{galaxy_id}.png",
                                                  flux_column=None))
    assert [im["galaxy_id"] for im in coco.images] == ids
    assert report.as_dict()["counts"]["clumps"]["dropped"] == {"unknown_galaxy": 1}
    assert len(coco.annotations) == 2


def test_oversized_tiny_and_black_row_images_are_counted_drops(tmp_path, caplog):
    """A 115-byte PNG declaring 12000 x 12000, a 1 x 1 PNG and a PNG whose pixel data stop
    after 20 of 64 rows are ``undecodable_image`` drops, the log naming file and reason; the
    bomb is refused from its header, never decoded."""
    from image_helpers import write_png

    from clump_d2.convert.images import image_problem

    folder = tmp_path / "png"
    folder.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(rgb).save(folder / "1.png")
    write_png(folder / "2.png", 12000, 12000, rows=1)
    write_png(folder / "3.png", 1, 1)
    write_png(folder / "4.png", 64, 64, rows=20)
    assert image_problem(folder / "2.png").startswith(
        f"{folder / '2.png'}: 12000 x 12000 = 144.0 Mpx > INPUT.MAX_PIXELS = 1048576")
    path = tmp_path / "t.csv"
    pd.DataFrame([[s, s, 1, 10, 20, 10, 20] for s in (1, 2, 3, 4)],
                 columns=COLUMNS).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        coco, report = convert_consensus_table(path, image_dir=folder)
    c = report.as_dict()["counts"]
    assert c["images"]["dropped"] == {"undecodable_image": 3} and c["images"]["kept"] == 1
    assert [im["id"] for im in coco.images] == [1]
    assert "12000 x 12000 = 144.0 Mpx > INPUT.MAX_PIXELS" in caplog.text
    assert f"{folder / '3.png'}: 1 x 1 px is smaller than 16 px" in caplog.text
    assert f"{folder / '4.png'}: truncated PNG: its pixel data ends after row 20 of 64" in \
        caplog.text
