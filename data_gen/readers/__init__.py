"""Readers for the real on-disk formats of the paper's sources (appendix A.1).

Each reader takes its dataset root and a :class:`~medsage.data_gen.records.SkipLog` and yields
:class:`~medsage.data_gen.records.Record` values; structural problems (a missing annotation file,
a missing column) raise :class:`~medsage.data_gen.records.DataError`, row problems are counted.
"""

from medsage.data_gen.readers.deeplesion import LESION_TYPES, WINDOW_PRESETS, read_deeplesion, window_hu
from medsage.data_gen.readers.roboflow import read_coco, read_voc, read_yolo
from medsage.data_gen.readers.vqa_json import location_cues, read_llava, read_pubmedvision

__all__ = [
    "LESION_TYPES",
    "WINDOW_PRESETS",
    "location_cues",
    "read_coco",
    "read_deeplesion",
    "read_llava",
    "read_pubmedvision",
    "read_voc",
    "read_yolo",
    "window_hu",
]
