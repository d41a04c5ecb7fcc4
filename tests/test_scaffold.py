"""The LVKC scaffold: tolerant parsing, grounding objects, coordinate conversion, rendering."""

import pytest

from medsage.reward_fns import scaffold as sc

CLEAN = (
    "An axial CT of the abdomen. <LOC>The right lobe of the liver "
    '{"box_2d": [300, 200, 600, 500], "label": "hypodense lesion"}</LOC>'
    "<VISUAL>A round hypodense focus.</VISUAL><KNOWLEDGE>Cysts are hypodense.</KNOWLEDGE>"
    "<CON>A simple cyst fits.</CON><ANSWER>Yes</ANSWER>"
)


def kinds(parsed):
    return sorted((p.kind, p.tag) for p in parsed.problems)


def test_clean_response_parses_with_preamble_and_every_stage():
    p = sc.parse(CLEAN)
    assert p.valid and p.order == sc.STAGES
    assert p.preamble == "An axial CT of the abdomen."
    assert p.get("ANSWER") == "Yes"
    assert p.get("VISUAL") == "A round hypodense focus."


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<LOC>l</LOC><VISUAL>v</VISUAL><KNOWLEDGE>k</KNOWLEDGE><CON>c</CON>", [("missing", "ANSWER")]),
        (
            "<LOC>l</LOC><VISUAL>v</VISUAL><VISUAL>w</VISUAL><KNOWLEDGE>k</KNOWLEDGE><CON>c</CON><ANSWER>a</ANSWER>",
            [("repeated", "VISUAL")],
        ),
        (
            "<LOC>l</LOC><VISUAL>v</VISUAL><KNOWLEDGE>k</KNOWLEDGE><CON>c</CON><ANSWER>a",
            [("unclosed", "ANSWER")],
        ),
        (
            "<LOC>l</LOC><VISUAL>v<KNOWLEDGE>k</KNOWLEDGE><CON>c</CON><ANSWER>a</ANSWER>",
            [("unclosed", "VISUAL")],
        ),
        (
            "<LOC>l</LOC><KNOWLEDGE>k</KNOWLEDGE><VISUAL>v</VISUAL><CON>c</CON><ANSWER>a</ANSWER>",
            [("misordered", "LOC")],
        ),
        (
            "<LOC>l</LOC><VISUAL> </VISUAL><KNOWLEDGE>k</KNOWLEDGE><CON>c</CON><ANSWER>a</ANSWER>",
            [("empty", "VISUAL")],
        ),
        (
            "</CON><LOC>l</LOC><VISUAL>v</VISUAL><KNOWLEDGE>k</KNOWLEDGE><CON>c</CON><ANSWER>a</ANSWER>",
            [("stray_close", "CON")],
        ),
        (
            "<LOC>l<LOC><VISUAL>v</VISUAL><KNOWLEDGE>k</KNOWLEDGE><CON>c</CON><ANSWER>a</ANSWER>",
            [("closed_with_open_tag", "LOC")],
        ),
    ],
)
def test_each_defect_is_reported_and_content_recovered(text, expected):
    p = sc.parse(text)
    assert kinds(p) == sorted(expected)
    assert not p.valid


def test_closed_with_open_tag_keeps_the_stage_content():
    p = sc.parse("<LOC>right lung<LOC><VISUAL>v</VISUAL>")
    assert p.get("LOC") == "right lung"
    assert p.get("VISUAL") == "v"


def test_unclosed_stage_ends_where_the_next_opens():
    p = sc.parse("<LOC>l</LOC><VISUAL>dense<KNOWLEDGE>k</KNOWLEDGE>")
    assert p.get("VISUAL") == "dense"
    assert p.get("KNOWLEDGE") == "k"


def test_tags_are_case_and_space_tolerant_but_not_prefix_matched():
    p = sc.parse("< loc >l</LOC><visual>v</visual><LOCATION>x</LOCATION>")
    assert p.get("LOC") == "l" and p.get("VISUAL").startswith("v")
    assert "LOCATION" not in p.sections


WELL = "<LOC>left lobe</LOC><VISUAL>v</VISUAL><KNOWLEDGE>k</KNOWLEDGE><CON>c</CON><ANSWER>{}</ANSWER>"


@pytest.mark.parametrize(
    "text",
    [
        WELL.format("yes"),
        " pre < 5 mm " + WELL.format("a lesion <5 mm, ratio <1 and a<b") + " after <",
        WELL.format("   "),  # an empty stage: the one defect the one-pass read reports
        WELL.format("yes").replace("<CON>", "<con>"),
        WELL.format("yes").replace("<CON>", "< CON>"),
        WELL.format("yes").replace("</CON>", "</\tCON  >"),
        WELL.format("yes").replace("<KNOWLEDGE>", "<\u212aNOWLEDGE>"),  # the Kelvin sign reads as K
        WELL.format("yes <ANSWER> again"),
        WELL.format("yes") + "<ANSWER>no</ANSWER>",
        WELL.format("yes").replace("<VISUAL>v</VISUAL>", ""),
        "<VISUAL>v</VISUAL>" + WELL.format("yes"),
    ],
)
def test_one_pass_read_gives_the_full_parse(text):
    """Well-formed text is read in one pass (parse_tags' common case); it must equal the tag loop's
    result, and anything else in a tag's place hands the text to the loop."""
    fast = sc.parse(text)
    sc._WELL_FORMED_CACHE[sc.STAGES] = None  # the tag loop alone
    try:
        full = sc.parse(text)
    finally:
        del sc._WELL_FORMED_CACHE[sc.STAGES]
    assert (fast.preamble, fast.sections, fast.order, fast.problems) == (full.preamble, full.sections, full.order,
                                                                        full.problems)


def test_one_pass_read_takes_stray_angle_brackets_as_text():
    p = sc.parse("x < y " + WELL.format("under <5 mm"))
    assert p.valid and p.preamble == "x < y" and p.get("ANSWER") == "under <5 mm"
    spaced = sc.parse(WELL.format("yes < answer>"))  # a tag, however spaced: it closes the answer stage
    assert spaced.get("ANSWER") == "yes" and {p.kind for p in spaced.problems} == {"closed_with_open_tag", "stray_close"}


def test_no_tags_means_everything_is_preamble():
    p = sc.parse("just words")
    assert p.order == () and p.preamble == "just words"
    assert {pr.kind for pr in p.problems} == {"missing"}


def test_non_string_input_is_treated_as_text():
    assert sc.parse(None).preamble == ""
    assert sc.parse(12).preamble == "12"


def test_groundings_box_and_point_on_grid():
    loc = (
        'fluid {"box_2d": [315, 742, 785, 968], "label": "perisplenic fluid"} and '
        '{"point": [420, 215], "label": "RUQ"}'
    )
    found = sc.groundings(loc)
    assert found == [
        sc.Grounding("perisplenic fluid", box_2d=(315.0, 742.0, 785.0, 968.0)),
        sc.Grounding("RUQ", point=(420.0, 215.0)),
    ]


@pytest.mark.parametrize(
    "obj",
    [
        '{"box_2d": [600, 100, 300, 400], "label": "inverted"}',
        '{"box_2d": [0, 0, 1200, 400], "label": "off grid"}',
        '{"box_2d": [1, 2, 3], "label": "three numbers"}',
        '{"point": ["a", 3], "label": "text"}',
        '{"box_2d": [1, 2, 3, 4], "label": "broken json"',
        '{"label": "no geometry"}',
        '{"box_2d": [true, 2, 3, 4], "label": "bool"}',
    ],
)
def test_malformed_groundings_are_skipped(obj):
    assert sc.groundings(f"region {obj}") == []


def test_names_region_by_object_or_anatomical_words():
    assert sc.names_region('{"point": [10, 10], "label": "x"}')
    assert sc.names_region("the left upper quadrant")
    assert not sc.names_region("it looks bad")
    assert not sc.names_region("")
    assert not sc.names_region(None)


def test_pixel_grid_round_trip_for_non_square_image():
    w, h = 640, 480
    box = sc.pixels_to_box_2d((64, 48, 320, 240), w, h)
    assert box == (100, 100, 500, 500)
    assert sc.box_2d_to_pixels(box, w, h) == (64.0, 48.0, 320.0, 240.0)
    assert sc.point_to_pixels((500, 250), w, h) == (160.0, 240.0)


def test_pixel_boxes_outside_the_image_are_clipped_to_the_grid():
    assert sc.pixels_to_box_2d((-20, -5, 700, 500), 640, 480) == (0, 0, 1000, 1000)


def test_render_then_parse_round_trips():
    s = sc.Scaffold(
        preamble="A chest X-ray.",
        loc="The left lower lobe",
        visual="Opacity.",
        knowledge="Consolidation is opaque.",
        con="Pneumonia is likely.",
        answer="B",
        groundings=(sc.Grounding("opacity", box_2d=(500, 100, 800, 450)), sc.Grounding("hilum", point=(400, 480))),
    )
    p = sc.parse(s.render())
    assert p.valid
    assert p.preamble == "A chest X-ray."
    assert p.get("ANSWER") == "B"
    assert sc.groundings(p.get("LOC")) == list(s.groundings)


def test_self_check_reviews_the_paper_dimensions():
    assert set(sc.SELF_CHECK_DIMENSIONS.values()) == {
        "visual grounding",
        "visual analysis",
        "medical knowledge consistency",
    }
