"""DeepLesion: ``DL_info.csv`` plus 16-bit PNG slices (appendix A.1, a strong-ROI source).

One csv row is one lesion. ``File_name`` ``000001_01_01_109.png`` lives at
``Images_png/000001_01_01/109.png``; pixel - 32768 is the Hounsfield unit. Multi-valued cells
are quoted, comma-separated lists. ``Coarse_lesion_type`` -1 marks an unannotated lesion (no
label); ``Possibly_noisy`` 1 flags an unreliable annotation, kept on the record for the filter.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medsage.data_gen.records import ROI, DataError, Record, SkipLog

LESION_TYPES: dict[int, str] = {
    1: "bone",
    2: "abdomen",
    3: "mediastinum",
    4: "liver",
    5: "lung",
    6: "kidney",
    7: "soft tissue",
    8: "pelvis",
}
SPLITS = {"1": "train", "2": "val", "3": "test"}
HU_OFFSET = 32768
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft_tissue": (-160.0, 240.0),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
    "full": (-1024.0, 3071.0),
}
REQUIRED_COLUMNS = (
    "File_name",
    "Patient_index",
    "Bounding_boxes",
    "Coarse_lesion_type",
    "Possibly_noisy",
    "Image_size",
    "DICOM_windows",
    "Train_Val_Test",
)


def window_hu(pixels_16bit: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """16-bit DeepLesion pixels -> 8-bit display values for the HU window ``(low, high)``."""
    low, high = window
    hu = pixels_16bit.astype(np.float32) - HU_OFFSET
    return (np.clip((hu - low) / max(high - low, 1e-6), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def image_path(root: Path, file_name: str) -> Path:
    """``000001_01_01_109.png`` -> ``root/Images_png/000001_01_01/109.png``."""
    folder, _, slice_name = file_name.rpartition("_")
    if not folder or not slice_name:
        raise ValueError(f"file name {file_name!r} is not <patient>_<study>_<series>_<slice>.png")
    return root / "Images_png" / folder / slice_name


def read_deeplesion(root: Path, skips: SkipLog, *, window: str = "dicom") -> Iterator[Record]:
    """Yield one record per lesion row of ``root/DL_info.csv``.

    ``window`` is ``dicom`` (each row's DICOM_windows) or a :data:`WINDOW_PRESETS` name.
    """
    if window != "dicom" and window not in WINDOW_PRESETS:
        raise ValueError(f"window must be 'dicom' or one of {sorted(WINDOW_PRESETS)}, got {window!r}")
    csv_path = Path(root) / "DL_info.csv"
    if not csv_path.is_file():
        raise DataError(csv_path, None, None, "DeepLesion annotation file not found")
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (rows.fieldnames or [])]
        if missing:
            raise DataError(csv_path, 1, missing[0], f"missing columns {missing}")
        for line, row in enumerate(rows, start=2):
            skips.seen += 1
            try:
                record = _record(Path(root), csv_path, line, row, window)
            except DataError as err:
                skips.skip_error(err)
                continue
            if not record.image.is_file():
                skips.skip("missing_image", f"{csv_path}, row {line}", str(record.image))
                continue
            skips.kept += 1
            yield record


def _numbers(csv_path: Path, line: int, row: dict, column: str, n: int | None) -> list[float]:
    text = (row.get(column) or "").strip()
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DataError(csv_path, line, column, f"expected numbers, got {text!r}") from None
    if n is not None and len(values) != n:
        raise DataError(csv_path, line, column, f"expected {n} numbers, got {text!r}")
    return values


def _record(root: Path, csv_path: Path, line: int, row: dict, window: str) -> Record:
    num = lambda column, n: _numbers(csv_path, line, row, column, n)  # noqa: E731
    file_name = (row.get("File_name") or "").strip()
    try:
        path = image_path(root, file_name)
    except ValueError as err:
        raise DataError(csv_path, line, "File_name", str(err)) from None
    x1, y1, x2, y2 = num("Bounding_boxes", 4)
    if not (x2 > x1 and y2 > y1):
        raise DataError(csv_path, line, "Bounding_boxes", f"degenerate box {row['Bounding_boxes']!r}")
    width, height = (int(v) for v in num("Image_size", 2))
    lesion_type = int(num("Coarse_lesion_type", 1)[0])
    if lesion_type != -1 and lesion_type not in LESION_TYPES:
        raise DataError(csv_path, line, "Coarse_lesion_type", f"unknown lesion type {lesion_type}")
    label = LESION_TYPES.get(lesion_type, "")
    dicom = num("DICOM_windows", 2)
    if window == "dicom" and not dicom[1] > dicom[0]:
        raise DataError(csv_path, line, "DICOM_windows", f"empty window {row['DICOM_windows']!r}")
    meta: dict[str, object] = {"file_name": file_name, "lesion_type": lesion_type}
    for column, key in (("Lesion_diameters_Pixel_", "diameters_px"), ("Spacing_mm_px_", "spacing_mm"),
                        ("Normalized_lesion_location", "normalized_location")):
        if (row.get(column) or "").strip():
            meta[key] = num(column, None)
    for column, key in (("Patient_gender", "gender"), ("Patient_age", "age")):
        if (row.get(column) or "").strip():
            meta[key] = row[column].strip()
    return Record(
        record_id=f"deeplesion/{file_name}#{line}",
        source="deeplesion",
        image=path,
        modality="CT",
        rois=(ROI(label=label or "lesion", box=(x1, y1, x2, y2)),),
        labels=(label,) if label else (),
        split=SPLITS.get((row.get("Train_Val_Test") or "").strip(), "train"),
        group=f"deeplesion/{(row.get('Patient_index') or '').strip()}",
        noisy=(row.get("Possibly_noisy") or "0").strip() == "1",
        window=tuple(dicom) if window == "dicom" else WINDOW_PRESETS[window],
        size=(width, height),
        meta=meta,
        provenance=f"{csv_path}, row {line}",
    )
