"""Phantom source: small synthetic CT- and X-ray-like images with lesions of known position, size and density.

Why: no real dataset can be downloaded here, yet the readers must be exercised on their real
formats. This module writes phantoms *as* DeepLesion (16-bit PNG + ``DL_info.csv``), a Roboflow
COCO export and PubMedVision json, so tests and the quickstart go through the real readers; and
a SLAKE-format benchmark (``test.json`` + ``imgs/``) whose questions are answerable from the pixels.
Everything is deterministic in ``seed``.

The CT phantom is an axial slice with lungs (-850 HU), a liver (60 HU), kidneys (150 HU) and a
spine (700 HU) inside a 20-50 HU body; one lesion sits inside one organ with a density that differs
from it. Image left is patient right (radiological convention).
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from medsage.data_gen.instructions import load_question_templates
from medsage.data_gen.readers.deeplesion import HU_OFFSET, LESION_TYPES

CT_SIZE = 256
XRAY_SIZE = 256
SPACING_MM = 0.8
CT_WINDOW = (-175.0, 275.0)


@dataclass(frozen=True)
class Organ:
    name: str
    center: tuple[float, float]  # fractions of width, height
    radii: tuple[float, float]
    hu: float
    lesion_hu: float
    lesion_radius_px: tuple[int, int]
    place: str  # a patient-side location phrase for the organ


# Lesion densities are chosen to be conspicuous in the CT window, and so that each organ's lesion has its
# own look, as on real CT: an enhancing focus in lung and kidney, a hypoattenuating one in the liver (like
# most focal liver lesions), a lytic one in bone. Lesions are 4-9 px in radius once the processor shrinks a
# slice to the quickstart's 112x112 budget. Subtler lesions are realistic but a tiny vision tower trained
# from random weights for a few minutes cannot find them (issue 7's probe, tests/perf/probe_phantom_vision.py:
# held-out organ accuracy stayed at the majority rate with subtle lesions; a bright liver lesion was the
# commonest confusion, with the kidney below it).
ORGANS: tuple[Organ, ...] = (
    Organ("lung", (0.32, 0.34), (0.12, 0.14), -850, 230, (12, 21), "right lung field"),
    Organ("lung", (0.68, 0.34), (0.12, 0.14), -850, 230, (12, 21), "left lung field"),
    Organ("liver", (0.30, 0.62), (0.12, 0.09), 60, -60, (12, 19), "right upper abdomen"),
    Organ("kidney", (0.35, 0.80), (0.07, 0.09), 150, 260, (10, 15), "right retroperitoneum"),
    Organ("kidney", (0.65, 0.80), (0.07, 0.09), 150, 260, (10, 15), "left retroperitoneum"),
    Organ("bone", (0.50, 0.82), (0.07, 0.07), 700, -100, (10, 15), "posterior midline"),
)
# Patient-to-patient variation (body habitus, table position): scale range and shift as a fraction of
# the image. Kept small so that anatomy stays where a tiny model can learn it, large enough that no two
# patients hash alike in the leakage check.
PATIENT_SCALE = (0.95, 1.05)
PATIENT_SHIFT = 0.025
LESION_TYPE_IDS = {name: i for i, name in LESION_TYPES.items()}
XRAY_CLASSES = ("mass", "nodule")


@dataclass(frozen=True)
class Lesion:
    """Ground truth of one phantom lesion (pixels)."""

    label: str
    cx: float
    cy: float
    radius: float
    hu: float
    organ: Organ

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.cx - self.radius, self.cy - self.radius, self.cx + self.radius, self.cy + self.radius)

    @property
    def brighter(self) -> bool:
        return self.hu > self.organ.hu


def _ellipse(size: int, center: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return ((xx - center[0]) / radii[0]) ** 2 + ((yy - center[1]) / radii[1]) ** 2 <= 1.0


def _disc(size: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _place(rng: random.Random, organ: Organ, size: int) -> tuple[float, float, float]:
    """A lesion centre and radius that keep the lesion inside its organ."""
    r = rng.randint(*organ.lesion_radius_px)
    rx, ry = organ.radii[0] * size - r - 1, organ.radii[1] * size - r - 1
    angle, frac = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0, 0.6))
    return organ.center[0] * size + frac * rx * math.cos(angle), organ.center[1] * size + frac * ry * math.sin(angle), r


def _patient(rng: random.Random, pixels: np.ndarray, lesion: Lesion, fill: float) -> tuple[np.ndarray, Lesion]:
    """Scale and shift the whole phantom (body habitus, table position): one patient differs from the next."""
    size = pixels.shape[0]
    scale = rng.uniform(*PATIENT_SCALE)
    dx, dy = (rng.uniform(-PATIENT_SHIFT, PATIENT_SHIFT) * size for _ in range(2))
    c = size / 2
    inverse = (1 / scale, 0, c - (c + dx) / scale, 0, 1 / scale, c - (c + dy) / scale)
    moved = Image.fromarray(pixels.astype(np.float32)).transform(
        (size, size), Image.Transform.AFFINE, inverse, resample=Image.Resampling.NEAREST, fillcolor=fill)
    cx, cy = scale * (lesion.cx - c) + c + dx, scale * (lesion.cy - c) + c + dy
    return np.asarray(moved), Lesion(lesion.label, cx, cy, lesion.radius * scale, lesion.hu, lesion.organ)


def ct_slice(rng: random.Random, organ: Organ | None = None) -> tuple[np.ndarray, Lesion]:
    """A 16-bit DeepLesion-style slice (HU + 32768) with one lesion in ``organ`` (random if None)."""
    organ = organ or rng.choice(ORGANS)
    hu = np.full((CT_SIZE, CT_SIZE), -1000.0, dtype=np.float32)
    body = (rng.uniform(0.41, 0.48), rng.uniform(0.39, 0.46))
    hu[_ellipse(CT_SIZE, (0.5, 0.5), body)] = rng.uniform(20.0, 50.0)
    for o in ORGANS:
        hu[_ellipse(CT_SIZE, o.center, o.radii)] = o.hu
    cx, cy, r = _place(rng, organ, CT_SIZE)
    hu[_disc(CT_SIZE, cx, cy, r)] = organ.lesion_hu
    hu, lesion = _patient(rng, hu, Lesion(organ.name, cx, cy, r, organ.lesion_hu, organ), -1000.0)
    noise_rng = np.random.default_rng(rng.randrange(2**32))
    noise = noise_rng.normal(0.0, 8.0, hu.shape) + _shading(noise_rng, CT_SIZE, amplitude_hu=12.0)
    pixels = np.clip(hu + noise + HU_OFFSET, 0, 65535).astype(np.uint16)
    return pixels, lesion


def _shading(rng: np.random.Generator, size: int, amplitude_hu: float) -> np.ndarray:
    """Smooth low-frequency intensity variation (beam hardening, uneven enhancement), different in
    every patient, so that two patients never share a perceptual hash (the leakage check)."""
    coarse = Image.fromarray(rng.normal(0.0, amplitude_hu, (6, 6)).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC))


def ct_to_8bit(pixels: np.ndarray) -> Image.Image:
    from medsage.data_gen.readers.deeplesion import window_hu

    return Image.fromarray(window_hu(pixels, CT_WINDOW))


def xray(rng: random.Random, label: str | None = None) -> tuple[Image.Image, Lesion]:
    """An 8-bit chest-radiograph-like image with one ``mass`` (large) or ``nodule`` (small) opacity."""
    label = label or rng.choice(XRAY_CLASSES)
    img = np.full((XRAY_SIZE, XRAY_SIZE), 25.0, dtype=np.float32)
    img[_ellipse(XRAY_SIZE, (0.5, 0.55), (0.42, 0.42))] = 110.0
    lungs = [Organ("lung", (0.32, 0.5), (0.13, 0.26), 45, 0, (0, 0), "right lung"),
             Organ("lung", (0.68, 0.5), (0.13, 0.26), 45, 0, (0, 0), "left lung")]
    for lung in lungs:
        img[_ellipse(XRAY_SIZE, lung.center, lung.radii)] = 45.0
    img[_ellipse(XRAY_SIZE, (0.5, 0.52), (0.06, 0.3))] = 170.0
    lung = rng.choice(lungs)
    radius = (14, 22) if label == "mass" else (4, 7)
    organ = Organ("lung", lung.center, lung.radii, 45, 115, radius, lung.place)
    cx, cy, r = _place(rng, organ, XRAY_SIZE)
    img[_disc(XRAY_SIZE, cx, cy, r)] = 115.0
    img, lesion = _patient(rng, img, Lesion(label, cx, cy, r, 115.0, organ), 25.0)
    img = img + np.random.default_rng(rng.randrange(2**32)).normal(0.0, 4.0, img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    return out, lesion


def describe(lesion: Lesion, modality: str) -> str:
    """A radiology-style sentence about the lesion, with its location cue (PubMedVision-like text)."""
    size_mm = 2 * lesion.radius * SPACING_MM
    density = ("hyperdense" if lesion.brighter else "hypodense") if modality == "CT" else "round opacity"
    noun = "lesion" if modality == "CT" else lesion.label
    return f"A well-defined {density} {noun} of about {size_mm:.0f} mm is seen in the {lesion.organ.place}."


def write_deeplesion(root: Path, n: int, seed: int) -> Path:
    """Write ``n`` phantom lesions as DeepLesion (``DL_info.csv`` + ``Images_png``); returns ``root``."""
    rng, root = random.Random(seed), Path(root)
    rows = []
    for i in range(n):
        pixels, lesion = ct_slice(rng)
        folder, slice_no = f"{i + 1:06d}_01_01", 100 + i % 7
        (root / "Images_png" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "Images_png" / folder / f"{slice_no:03d}.png")
        rows.append(_deeplesion_row(i, folder, slice_no, lesion))
    with (root / "DL_info.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["File_name"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _list(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _deeplesion_row(i: int, folder: str, slice_no: int, lesion: Lesion) -> dict[str, str]:
    pad = 5.0
    x1, y1, x2, y2 = lesion.box
    box = (max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, CT_SIZE - 1), min(y2 + pad, CT_SIZE - 1))
    return {
        "File_name": f"{folder}_{slice_no:03d}.png",
        "Patient_index": str(i + 1),
        "Study_index": "1",
        "Series_ID": "1",
        "Key_slice_index": str(slice_no),
        "Measurement_coordinates": _list((lesion.cx - lesion.radius, lesion.cy, lesion.cx + lesion.radius, lesion.cy,
                                          lesion.cx, lesion.cy - lesion.radius, lesion.cx, lesion.cy + lesion.radius)),
        "Bounding_boxes": _list(round(v, 3) for v in box),
        "Lesion_diameters_Pixel_": _list((2 * lesion.radius, 2 * lesion.radius)),
        "Normalized_lesion_location": _list((round(lesion.cx / CT_SIZE, 4), round(lesion.cy / CT_SIZE, 4), 0.5)),
        "Coarse_lesion_type": str(LESION_TYPE_IDS[lesion.label]),
        "Possibly_noisy": "0",
        "Slice_range": _list((slice_no - 3, slice_no + 3)),
        "Spacing_mm_px_": _list((SPACING_MM, SPACING_MM, 5)),
        "Image_size": _list((CT_SIZE, CT_SIZE)),
        "DICOM_windows": _list(CT_WINDOW),
        "Patient_gender": "F" if i % 2 else "M",
        "Patient_age": str(40 + i % 40),
        "Train_Val_Test": "1",
    }


def write_coco(root: Path, n: int, seed: int, *, project: str = "phantom-chest") -> Path:
    """Write ``n`` phantom radiographs as a Roboflow COCO export (train/valid); returns ``root``."""
    rng, root = random.Random(seed), Path(root)
    classes = {name: i + 1 for i, name in enumerate(XRAY_CLASSES)}
    categories = [{"id": 0, "name": project, "supercategory": "none"}]
    categories += [{"id": cid, "name": name, "supercategory": project} for name, cid in classes.items()]
    splits: dict[str, dict] = {}
    for i in range(n):
        split = "valid" if i % 5 == 4 else "train"
        data = splits.setdefault(split, {"images": [], "annotations": [], "categories": categories})
        image, lesion = xray(rng)
        name = f"phantom_{i:04d}_png.rf.{rng.getrandbits(64):016x}.jpg"
        (root / split).mkdir(parents=True, exist_ok=True)
        image.save(root / split / name, quality=95)
        data["images"].append({"id": i, "file_name": name, "width": XRAY_SIZE, "height": XRAY_SIZE})
        x1, y1, x2, y2 = lesion.box
        data["annotations"].append({"id": i, "image_id": i, "category_id": classes[lesion.label],
                                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                    "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "segmentation": []})
    for split, data in splits.items():
        (root / split / "_annotations.coco.json").write_text(json.dumps(data), encoding="utf-8")
    return root


def write_pubmedvision(root: Path, n: int, seed: int) -> Path:
    """Write ``n`` phantom records as PubMedVision json + images; returns the json path."""
    rng, root = random.Random(seed), Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        if i % 2 == 0:
            pixels, lesion = ct_slice(rng)
            image, modality, long_name = ct_to_8bit(pixels), "CT", "Computed Tomography"
        else:
            image, lesion = xray(rng)
            modality, long_name = "X-ray", "Digital Radiography"
        name = f"images/pmc_phantom_{i:04d}.png"
        image.save(root / name)
        question = rng.choice(("What abnormality can be seen in this image?", "Describe the main finding in this image."))
        records.append({
            "id": f"phantom_{i:04d}",
            "image": [name],
            "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": describe(lesion, modality)}],
            "modality": long_name,
            "body_part": "Chest" if lesion.organ.name == "lung" else "Abdomen",
        })
    path = root / "PubMedVision_InstructionTuning_VQA.json"
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return path


def write_phantom_benchmark(out_dir: Path, n: int, seed: int) -> Path:
    """Write ``n`` phantom VQA items in SLAKE's format (``test.json`` + ``imgs/``); returns ``out_dir``.

    A held-out split of the training distribution: new patients, asked the instruction set's own
    DeepLesion questions (``templates/questions.yaml``), so accuracy after SFT measures what the
    SAGE data teaches. Two thirds are CLOSED yes/no ("Does this CT slice show a liver lesion?"),
    balanced between yes and no by construction; one third are OPEN ("which organ"). Every
    answer follows from the pixels: the organ is where the lesion sits.
    """
    rng, out_dir = random.Random(seed), Path(out_dir)
    templates = load_question_templates()["deeplesion"]
    organs = sorted({o.name for o in ORGANS})
    items = []
    for i in range(n):
        closed, want_yes = i % 3 != 2, (i // 3) % 2 == 0
        pixels, lesion = ct_slice(rng)
        img_name = f"phantom_{i:05d}/source.png"
        (out_dir / "imgs" / img_name).parent.mkdir(parents=True, exist_ok=True)
        ct_to_8bit(pixels).save(out_dir / "imgs" / img_name)
        if closed:
            candidate = lesion.label if want_yes else rng.choice([o for o in organs if o != lesion.label])
            question = rng.choice(templates["yes_no"]).format(modality="CT", candidate=candidate)
            answer = "Yes" if want_yes else "No"
        else:
            question, answer = rng.choice(templates["open"]).format(modality="CT"), lesion.label.capitalize()
        items.append({
            "img_id": i, "img_name": img_name, "question": question, "answer": answer,
            "answer_type": "CLOSED" if closed else "OPEN", "q_lang": "en", "modality": "CT",
            "content_type": "Abnormality" if closed else "Organ",
            "location": "Chest" if lesion.label == "lung" else "Abdomen", "qid": i,
        })
    (out_dir / "test.json").write_text(json.dumps(items, indent=1), encoding="utf-8")
    return out_dir
