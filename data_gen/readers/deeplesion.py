"""DeepLesion: ``DL_info.csv`` plus 16-bit PNG slices (appendix A.1, a strong-ROI source).

One csv row is one lesion; a slice with several lesions has several rows (usually consecutive,
not necessarily: an edited or concatenated csv may scatter them), and one record is one slice with
all its lesions, so a question about a slice sees every lesion on it.
``File_name`` ``000001_01_01_109.png`` lives at ``Images_png/000001_01_01/109.png``; pixel - 32768
is the Hounsfield unit. Multi-valued cells are quoted, comma-separated lists.

``Coarse_lesion_type`` is annotated only for the val and test lesions; train lesions carry -1
(no label), so without label imputation (``imputation.enabled``) DeepLesion's train slices are
counted as ``unlabeled`` and skipped. ``Possibly_noisy`` 1 flags an unreliable annotation; a slice
with one is flagged for the filter. A lesion row that cannot be read, or whose box lies outside the
image, is dropped and counted with its row; a slice left with no lesion is skipped with that reason.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medsage.data_gen.records import ROI, DataError, Record, SkipLog, inside_image, outside_error, utf8_lines

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
    """Yield one record per slice of ``root/DL_info.csv`` with all its lesions, wherever its rows are.

    ``window`` is ``dicom`` (each row's DICOM_windows) or a :data:`WINDOW_PRESETS` name. A slice is
    yielded when its last row has been read: a first pass counts each slice's rows, so only the
    rows of slices still incomplete are held (none when every slice's rows are consecutive).
    """
    if window != "dicom" and window not in WINDOW_PRESETS:
        raise ValueError(f"window must be 'dicom' or one of {sorted(WINDOW_PRESETS)}, got {window!r}")
    csv_path = Path(root) / "DL_info.csv"
    if not csv_path.is_file():
        raise DataError(csv_path, None, None, "DeepLesion annotation file not found")
    remaining = Counter(key for key, _ in _numbered_rows(csv_path))
    held: dict[object, list[tuple[int, dict]]] = {}
    for key, (line, row) in _numbered_rows(csv_path):
        rows = held.setdefault(key, [])
        rows.append((line, row))
        remaining[key] -= 1
        if remaining[key]:
            continue
        del held[key], remaining[key]
        skips.seen += 1
        record = _slice(Path(root), csv_path, rows, window, skips)
        if record is None:
            continue
        if not record.image.is_file():
            skips.skip("missing_image", record.provenance, str(record.image))
            continue
        skips.kept += 1
        yield record


def _numbered_rows(csv_path: Path) -> Iterator[tuple[object, tuple[int, dict]]]:
    """(slice key, (line, row)) of every csv row; the key is the File_name (a row without one is its own key)."""
    with csv_path.open("rb") as raw:
        rows = csv.DictReader(utf8_lines(raw, csv_path))
        missing = [c for c in REQUIRED_COLUMNS if c not in (rows.fieldnames or [])]
        if missing:
            raise DataError(csv_path, 1, missing[0], f"missing columns {missing}")
        for line, row in enumerate(rows, start=2):
            name = (row.get("File_name") or "").strip()
            yield name or ("no File_name", line), (line, row)


def _slice(root: Path, csv_path: Path, rows: list[tuple[int, dict]], window: str, skips: SkipLog) -> Record | None:
    """One slice's record from its rows; unusable rows dropped and counted (all unusable: skipped, None)."""
    lesions, errors = [], []
    for line, row in rows:
        try:
            lesions.append((line, row, _lesion(root, csv_path, line, row, window)))
        except DataError as err:
            errors.append(err)
    if not lesions:
        skips.skip_error(errors[0])
        return None
    for err in errors:
        skips.drop_error(err)
    line, row, (path, _, _, dicom, _) = lesions[0]
    lines = [n for n, _, _ in lesions]
    meta: dict[str, object] = {"file_name": row["File_name"].strip(), "lesion_types": [les[4] for _, _, les in lesions]}
    for column, key in (("Lesion_diameters_Pixel_", "diameters_px"), ("Normalized_lesion_location", "normalized_location")):
        meta[key] = [_numbers(csv_path, n, r, column, None) for n, r, _ in lesions]
    if (row.get("Spacing_mm_px_") or "").strip():
        meta["spacing_mm"] = _numbers(csv_path, line, row, "Spacing_mm_px_", None)
    for column, key in (("Patient_gender", "gender"), ("Patient_age", "age")):
        if (row.get(column) or "").strip():
            meta[key] = row[column].strip()
    labels = tuple(dict.fromkeys(les[2] for _, _, les in lesions if les[2]))
    return Record(
        record_id=f"deeplesion/{meta['file_name']}",
        source="deeplesion",
        image=path,
        modality="CT",
        rois=tuple(ROI(label=les[2] or "lesion", box=les[1]) for _, _, les in lesions),
        labels=labels,
        split=SPLITS.get((row.get("Train_Val_Test") or "").strip(), "train"),
        group=f"deeplesion/{(row.get('Patient_index') or '').strip()}",
        noisy=any((r.get("Possibly_noisy") or "0").strip() == "1" for _, r, _ in lesions),
        window=tuple(dicom) if window == "dicom" else WINDOW_PRESETS[window],
        meta=meta,
        provenance=f"{csv_path}, row {lines[0]}" if len(lines) == 1 else f"{csv_path}, rows {', '.join(map(str, lines))}",
    )


def _numbers(csv_path: Path, line: int, row: dict, column: str, n: int | None) -> list[float]:
    text = (row.get(column) or "").strip()
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DataError(csv_path, line, column, f"expected numbers, got {text!r}") from None
    if n is not None and len(values) != n:
        raise DataError(csv_path, line, column, f"expected {n} numbers, got {text!r}")
    return values


def _lesion(root: Path, csv_path: Path, line: int, row: dict, window: str):
    """One row's (image path, box, label, DICOM window, lesion type), checked (the box against the image size)."""
    num = lambda column, n: _numbers(csv_path, line, row, column, n)  # noqa: E731
    file_name = (row.get("File_name") or "").strip()
    try:
        path = image_path(root, file_name)
    except ValueError as err:
        raise DataError(csv_path, line, "File_name", str(err)) from None
    box = tuple(num("Bounding_boxes", 4))
    if not (box[2] > box[0] and box[3] > box[1]):
        raise DataError(csv_path, line, "Bounding_boxes", f"degenerate box {row['Bounding_boxes']!r}")
    size = tuple(int(v) for v in num("Image_size", 2))
    if not inside_image(box, size):
        raise outside_error(csv_path, line, "Bounding_boxes", box, size)
    lesion_type = int(num("Coarse_lesion_type", 1)[0])
    if lesion_type != -1 and lesion_type not in LESION_TYPES:
        raise DataError(csv_path, line, "Coarse_lesion_type", f"unknown lesion type {lesion_type}")
    dicom = num("DICOM_windows", 2)
    if window == "dicom" and not dicom[1] > dicom[0]:
        raise DataError(csv_path, line, "DICOM_windows", f"empty window {row['DICOM_windows']!r}")
    return path, box, LESION_TYPES.get(lesion_type, ""), dicom, lesion_type
