"""The paper's published numbers (Tables 1 and 2), shown beside ours and never presented as measured here.

Table 1 is accuracy in percent on VQA-RAD, SLAKE, PathVQA, PMC-VQA and MMMU-Med; ``None`` is the
paper's dash. Table 2 is the GPT-score (1-5); its "Average" column is reproduced as printed (it
does not equal the mean of the four dimensions in the paper).
"""

from __future__ import annotations

TABLE1_BENCHMARKS: tuple[str, ...] = ("vqa_rad", "slake", "pathvqa", "pmc_vqa", "mmmu_med")
TABLE1_TITLES: dict[str, str] = {
    "vqa_rad": "VQA-RAD",
    "slake": "SLAKE",
    "pathvqa": "PathVQA",
    "pmc_vqa": "PMC-VQA",
    "mmmu_med": "MMMU",
    "omnimedvqa": "OmniMedVQA",
    "phantom": "Phantom",
}
PUBLISHED_LABEL = "published, not re-measured"

# (group, method) -> (VQA-RAD, SLAKE, PathVQA, PMC-VQA, MMMU, Average)
TABLE1: dict[tuple[str, str], tuple[float | None, ...]] = {
    ("Proprietary", "GPT-4.1"): (65.0, 72.2, 55.5, 55.2, 75.2, 64.6),
    ("Proprietary", "Claude-Sonnet-4"): (67.6, 70.6, 54.2, 54.4, 74.6, 64.3),
    ("Proprietary", "Gemini-2.5-Flash"): (68.5, 75.8, 55.4, 55.5, 76.9, 66.4),
    ("General-purpose", "LLaVA-v1.5-8B"): (54.2, 59.4, 54.1, 36.4, 38.2, 48.5),
    ("General-purpose", "LLaVA-Next-7B"): (52.6, 57.9, 47.9, 35.5, 33.1, 41.4),
    ("General-purpose", "LLaVA-Next-13B"): (55.8, 58.9, 51.9, 36.6, 39.3, 44.5),
    ("General-purpose", "Qwen2.5-VL-7B"): (67.3, 69.5, 63.9, 50.4, 56.7, 61.6),
    ("General-purpose", "InternVL3-8B"): (67.3, 69.7, 65.7, 52.7, None, 63.9),
    ("Medical non-reasoning", "Med-Flamingo"): (45.4, 43.5, 54.7, 23.3, 28.3, 39.0),
    ("Medical non-reasoning", "RadFM"): (50.6, 34.4, 38.7, 25.9, 27.0, 35.3),
    ("Medical non-reasoning", "LLaVA-Med-7B"): (51.4, 48.6, 56.2, 24.7, 36.9, 43.6),
    ("Medical non-reasoning", "HuatouGPT-V-8B"): (59.4, 66.8, 59.8, 51.4, 56.7, 58.8),
    ("Medical non-reasoning", "Lingshu-7B"): (62.2, 78.9, 71.7, 55.6, 70.0, 67.7),
    ("Medical reasoning", "Med-R1"): (55.9, 55.1, 53.3, 45.8, 32.7, 46.6),
    ("Medical reasoning", "MedVLM-R1"): (61.4, 56.1, 55.2, 44.8, 35.5, 50.6),
    ("Medical reasoning", "ViTAR"): (70.1, 80.8, 67.0, 57.2, 72.0, 69.4),
    ("Medical reasoning", "MedEyes"): (70.7, 79.1, 64.8, 55.3, 59.7, 65.9),
    ("Medical reasoning", "MEDSAGE (paper)"): (70.4, 79.8, 66.7, 58.3, 65.8, 69.8),
}

TABLE2_DIMENSIONS: tuple[str, ...] = ("localization", "visual_analysis", "knowledge", "reasoning")

# (model stage, benchmark) -> (Localization, Visual Analysis, Knowledge, Reasoning, Average as printed)
TABLE2: dict[tuple[str, str], tuple[float, ...]] = {
    ("Baseline", "pathvqa"): (2.706, 2.412, 3.059, 2.529, 3.033),
    ("Baseline", "slake"): (3.014, 2.350, 3.623, 2.614, 3.033),
    ("Baseline", "vqa_rad"): (2.751, 2.320, 2.911, 2.421, 3.033),
    ("SFT", "pathvqa"): (2.961, 2.625, 3.612, 3.365, 3.037),
    ("SFT", "slake"): (3.446, 2.629, 3.965, 3.036, 3.073),
    ("SFT", "vqa_rad"): (3.256, 2.927, 3.422, 3.140, 3.033),
    ("SFT+RL", "pathvqa"): (3.146, 3.020, 3.948, 3.644, 3.033),
    ("SFT+RL", "slake"): (3.637, 2.921, 4.096, 3.347, 3.034),
    ("SFT+RL", "vqa_rad"): (3.830, 3.447, 3.652, 3.453, 3.033),
}
