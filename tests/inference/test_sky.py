"""Pixel -> sky: the tangent-plane route is exactly a FITS TAN WCS, the WCS route applies the
half-pixel convention, and the orientation options do what they say."""
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from clump_d2.convert.catalog import CatalogOptions, convert_catalog
from clump_d2.data.sky import sky_to_pixel, tangent_wcs
from clump_d2.inference.sky import (
    CentreScaleSky,
    WcsSky,
    build_sky_transform,
    pixel_offsets_to_standard,
    wcs_problem,
)


def tan_wcs(ra, dec, crpix1, crpix2, cd):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [crpix1, crpix2]
    w.wcs.cd = np.asarray(cd, np.float64)
    return w


@pytest.mark.parametrize("ra, dec", [(150.1, 2.2), (359.999, -30.0), (0.001, 0.0),
                                     (45.0, 85.0), (200.0, -89.5)])
def test_centre_scale_default_is_the_fits_tan_wcs(ra, dec):
    # 0.396 arcsec/px (SDSS), 200 px image: the reference pixel is the centre, (100, 100) in
    # continuous coordinates, i.e. CRPIX = 100.5 in FITS 1-based pixels.
    s = 0.396
    sky = CentreScaleSky(ra, dec, s, 100.0, 100.0)
    w = tan_wcs(ra, dec, 100.5, 100.5, [[-s / 3600, 0], [0, -s / 3600]])
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 200, 50), rng.uniform(0, 200, 50)
    got_ra, got_dec = sky(x, y)
    exp_ra, exp_dec = w.all_pix2world(x + 0.5, y + 0.5, 1)  # continuous -> FITS 1-based
    d_ra = (got_ra - exp_ra + 180) % 360 - 180
    assert np.max(np.abs(d_ra * np.cos(np.radians(exp_dec)))) < 1e-9
    assert np.max(np.abs(got_dec - exp_dec)) < 1e-9
    # the reference pixel is the catalogued position itself
    r0, d0 = sky(100.0, 100.0)
    assert abs(((r0 - ra + 180) % 360) - 180) < 1e-12 and abs(d0 - dec) < 1e-12


def test_orientation_north_up_east_left():
    # 10 px up (towards row 0) is 10 x 0.2 arcsec north; 10 px left is 2 arcsec east.
    sky = CentreScaleSky(10.0, 0.0, 0.2, 50.0, 50.0)
    ra, dec = sky([50.0, 40.0], [40.0, 50.0])
    assert dec[0] * 3600 == pytest.approx(2.0, abs=1e-9) and ra[0] == pytest.approx(10.0)
    assert (ra[1] - 10.0) * 3600 == pytest.approx(2.0, abs=1e-9)
    assert dec[1] == pytest.approx(0.0, abs=1e-12)


def test_orientation_flips_and_rotation_match_a_cd_matrix():
    s, theta = 0.25, 30.0
    for north_up in (True, False):
        for east_left in (True, False):
            sky = CentreScaleSky(120.0, 40.0, s, 32.0, 48.0, north_up, east_left, theta)
            # the linear part of the same projection as a CD matrix (deg/px, FITS axes:
            # x = column, y = row index, both increasing away from the first pixel)
            xi_x, eta_x = pixel_offsets_to_standard(1.0, 0.0, s, north_up, east_left, theta)
            xi_y, eta_y = pixel_offsets_to_standard(0.0, 1.0, s, north_up, east_left, theta)
            cd = np.array([[xi_x, xi_y], [eta_x, eta_y]]) / 3600.0
            w = tan_wcs(120.0, 40.0, 32.5, 48.5, cd)
            x, y = np.array([0.0, 10.0, 63.0]), np.array([5.0, 90.0, 0.0])
            got = np.stack(sky(x, y))
            exp = np.stack(w.all_pix2world(x + 0.5, y + 0.5, 1))
            assert np.max(np.abs(got - exp)) < 1e-9
    # rotation 90: "up" points east
    sky = CentreScaleSky(0.0, 0.0, 1.0, 0.0, 0.0, rotation_deg=90.0)
    ra, dec = sky(0.0, -3600.0)  # tangent-plane distance 1 degree up
    assert ra == pytest.approx(np.degrees(np.arctan(np.radians(1.0))), abs=1e-12)
    assert dec == pytest.approx(0.0, abs=1e-12)


def test_wcs_route_half_pixel_and_crop_offset():
    w = tan_wcs(30.0, -5.0, 20.0, 10.0, [[-1e-4, 2e-5], [3e-5, 1e-4]])
    sky = WcsSky.from_header(w.to_header().tostring())
    # continuous (19.5, 9.5) is the centre of FITS pixel (20, 10) = CRPIX -> CRVAL
    ra, dec = sky(19.5, 9.5)
    assert ra == pytest.approx(30.0, abs=1e-12) and dec == pytest.approx(-5.0, abs=1e-12)
    cropped = WcsSky.from_header(w.to_header(), offset=(5.0, 3.0))
    assert np.allclose(cropped(14.5, 6.5), (30.0, -5.0), atol=1e-12)


def test_build_sky_transform_precedence():
    header = tan_wcs(1.0, 2.0, 1.0, 1.0, [[-1e-4, 0], [0, 1e-4]]).to_header().tostring()
    record = {"ra": 50.0, "dec": 5.0, "pixel_scale": 0.3}
    assert build_sky_transform(record, 64, 32, header).source == "wcs"
    t = build_sky_transform(record, 64, 32, None)
    assert t.source == "centre+scale" and (t.ref_x, t.ref_y) == (32.0, 16.0)
    t = build_sky_transform(dict(record, ref_x=3.0, ref_y=4.0), 64, 32)
    assert (t.ref_x, t.ref_y) == (3.0, 4.0)
    assert build_sky_transform({"ra": 50.0, "dec": None, "pixel_scale": 0.3}, 64, 32) is None
    assert build_sky_transform({"ra": float("nan"), "dec": 1.0, "pixel_scale": 0.3}, 8, 8) is None
    # a header without a celestial WCS falls back to the centre route
    plain = fits.Header({"NAXIS": 2, "NAXIS1": 64, "NAXIS2": 32}).tostring()
    assert build_sky_transform(record, 64, 32, plain).source == "centre+scale"


def test_round_trip_through_catalog_converter_and_inference(tmp_path):
    """pixel -> sky (inference, CentreScaleSky) -> pixel (convert_catalog) returns the pixel,
    with a rotation and east to the right: both users share one projection and its options."""
    width, height, scale, ra0, dec0 = 60, 40, 0.3, 210.5, -12.25
    orient = dict(north_up=True, east_left=False, rotation_deg=37.0)
    Image.new("RGB", (width, height)).save(tmp_path / "g.png")
    pix = np.array([[12.3, 7.9], [30.0, 20.0], [51.6, 33.1]])
    sky = build_sky_transform({"ra": ra0, "dec": dec0, "pixel_scale": scale}, width, height,
                              **orient)
    ra, dec = sky(pix[:, 0], pix[:, 1])
    assert (ra[1], dec[1]) == pytest.approx((ra0, dec0), abs=1e-12)  # the centre
    # east to the right: a detection right of the centre (not rotated) has a larger RA
    plain = build_sky_transform({"ra": ra0, "dec": dec0, "pixel_scale": scale}, width, height,
                                east_left=False)
    assert plain(40.0, 20.0)[0] > ra0
    pd.DataFrame({"id": ["g"] * 3, "clump_ra": ra, "clump_dec": dec}).to_csv(
        tmp_path / "cl.csv", index=False)
    pd.DataFrame({"survey_id": ["g"], "RA": [ra0], "DEC": [dec0]}).to_csv(
        tmp_path / "gal.csv", index=False)
    options = CatalogOptions(image_template="{galaxy_id}.png", pixel_scale_column=None,
                             pixel_scale=scale, clump_id_column=None, flux_column=None,
                             **orient)
    coco, _ = convert_catalog(tmp_path / "cl.csv", tmp_path / "gal.csv", tmp_path, options)
    got = np.array([[a["x"], a["y"]] for a in coco.annotations])
    np.testing.assert_allclose(got, pix, atol=1e-8)
    # and the same WCS object both ways, sky -> pixel directly
    w = tangent_wcs(ra0, dec0, scale, width, height, **orient)
    np.testing.assert_allclose(np.stack(sky_to_pixel(w, ra, dec), 1), pix, atol=1e-8)
    # a different orientation does not round-trip (the options matter)
    other = tangent_wcs(ra0, dec0, scale, width, height, north_up=True, east_left=True,
                        rotation_deg=37.0)
    assert np.abs(np.stack(sky_to_pixel(other, ra, dec), 1) - pix).max() > 5.0


def test_wcs_problem_names_what_cannot_give_sky_positions():
    """A WCS wcslib refuses (unknown projection, ill-conditioned, CDELT 0) or whose pixel
    matrix is singular is a problem; a good one, or none at all, is not."""
    good = tan_wcs(150.0, 2.0, 32.0, 32.0, [[-1e-4, 0.0], [0.0, 1e-4]]).to_header()
    assert wcs_problem(good) is None and wcs_problem(good.tostring()) is None
    assert wcs_problem(fits.Header({"NAXIS": 2})) is None  # no celestial WCS: other routes

    def changed(**cards):
        header = good.copy()
        header.update(cards)
        return wcs_problem(header)

    assert changed(CTYPE1="RA---XYZ").startswith("invalid WCS (InconsistentAxisTypesError: ")
    assert "XYZ" in changed(CTYPE1="RA---XYZ")
    assert changed(CRVAL2=200.0).startswith("invalid WCS (InvalidTransformError: ")
    assert changed(CDELT1=0.0) == ("invalid WCS (SingularMatrixError: Linear transformation "
                                   "matrix is singular. PCi_ja matrix is singular.)")
    # a rank-1 matrix wcslib accepts: every pixel would map to one line of the sky
    assert changed(PC1_1=1e-4, PC1_2=1e-4, PC2_1=1e-4, PC2_2=1e-4).startswith(
        "singular WCS: its pixel-scale matrix")
