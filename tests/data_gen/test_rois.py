"""ROI transforms as properties: inside the image, non-degenerate, text ROIs untouched (section 3.1)."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from medsage.data_gen.records import ROI
from medsage.data_gen.rois import ROIConfig, clip_box, grounding, roi_set
from medsage.reward_fns.scaffold import box_2d_to_pixels


@st.composite
def image_and_box(draw):
    width, height = draw(st.integers(4, 2048)), draw(st.integers(4, 2048))
    x1 = draw(st.floats(-50, width + 50, allow_nan=False))
    y1 = draw(st.floats(-50, height + 50, allow_nan=False))
    w = draw(st.floats(0, width * 1.5, allow_nan=False))
    h = draw(st.floats(0, height * 1.5, allow_nan=False))
    return width, height, (x1, y1, x1 + w, y1 + h)


@settings(max_examples=300, deadline=None)
@given(image_and_box(), st.integers(0, 2**31), st.floats(1, 32))
def test_every_box_roi_is_inside_the_image_and_non_degenerate(ibox, seed, min_size):
    width, height, box = ibox
    config = ROIConfig(n_perturbed=2, n_expanded=2, n_subregion=2, jitter=0.3, min_size_px=min_size)
    rois = roi_set((ROI("lesion", box),), width, height, config, random.Random(seed))
    assert [r.kind for r in rois].count("perturbed") == 2 and rois[-1].kind == "global"
    for roi in rois:
        x1, y1, x2, y2 = roi.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert x2 - x1 >= min(min_size, width) - 1e-6 and y2 - y1 >= min(min_size, height) - 1e-6
        g = grounding(roi, width, height, "lesion")
        ymin, xmin, ymax, xmax = g.box_2d
        assert 0 <= ymin <= ymax <= 1000 and 0 <= xmin <= xmax <= 1000


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=40), st.integers(0, 2**31))
def test_text_rois_are_kept_unchanged(text, seed):
    roi = ROI(label=text, text=text, kind="text")
    rois = roi_set((roi,), 300, 200, ROIConfig(), random.Random(seed))
    assert rois[0] is roi and grounding(roi, 300, 200, text) is None
    assert [r.kind for r in rois] == ["text", "global"]


@settings(max_examples=200, deadline=None)
@given(image_and_box(), st.integers(0, 2**31))
def test_variants_stay_near_the_annotation(ibox, seed):
    width, height, box = ibox
    base = clip_box(box, width, height, 8)
    rois = roi_set((ROI("x", box),), width, height, ROIConfig(min_size_px=8), random.Random(seed))
    by_kind = {r.kind: r.box for r in rois}
    assert by_kind["annotated"] == base
    ex, sub = by_kind["expanded"], by_kind["subregion"]
    assert ex[0] <= base[0] + 1e-6 and ex[2] >= base[2] - 1e-6  # expansion contains the box
    bw, bh = base[2] - base[0], base[3] - base[1]
    if bw >= 8 / 0.6 and bh >= 8 / 0.6:  # large enough that the minimum size does not bite
        assert base[0] - 1e-6 <= sub[0] and sub[2] <= base[2] + 1e-6
        assert sub[2] - sub[0] >= 0.6 * bw - 1e-6


def test_grid_round_trip_is_within_a_grid_cell():
    box = (100.0, 50.0, 300.0, 250.0)
    g = grounding(ROI("x", box), 640, 480, "x")
    back = box_2d_to_pixels(g.box_2d, 640, 480)
    assert all(abs(a - b) <= 0.64 for a, b in zip(back, box))
