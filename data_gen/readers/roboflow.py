"""Roboflow exports: COCO json, YOLO txt + ``data.yaml``, Pascal VOC xml (appendix A.1, strong ROIs).

Roboflow names files ``<orig>_jpg.rf.<hash>.jpg``; augmented copies share the part before
``.rf.``, which becomes the record's ``group`` so copies of one image never straddle splits.
One image is one unit; a malformed box inside it is dropped and counted, the image kept. A box
outside its image is dropped as ``box_outside_image`` with its file and row, never clipped.

Besides Roboflow's layouts, YOLO in the Ultralytics layout (``images/<split>`` beside
``labels/<split>``, an optional ``path:`` root in data.yaml; a split may also be a ``.txt`` file
listing image paths, or a list of folders and such files) and VOC in the VOCdevkit layout
(``Annotations/`` + ``JPEGImages/``, splits from ``ImageSets/Main/<split>.txt``) are read.
VOC objects marked ``<difficult>1</difficult>`` are dropped and counted, as detectors skip them.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import yaml

from medsage.data_gen.records import ROI, DataError, Record, SkipLog, inside_image, outside_error, utf8_lines

SPLIT_NAMES = {"train": "train", "valid": "val", "val": "val", "test": "test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def group_of(file_name: str) -> str:
    """The original image a Roboflow file derives from (augmented copies share it)."""
    name = Path(file_name).name
    return name.split(".rf.")[0] if ".rf." in name else Path(name).stem


def _record(source: str, image: Path, split: str, rois: list[ROI], modality: str, where: str,
            name: str | None = None) -> Record:
    """``name`` identifies the image within its split (its file name unless given)."""
    labels = tuple(dict.fromkeys(r.label for r in rois))
    return Record(
        record_id=f"{source}/{split}/{name or image.name}",
        source=source,
        image=image,
        modality=modality,
        rois=tuple(rois),
        labels=labels,
        split=split,
        group=f"{source}/{group_of(image.name)}",
        provenance=where,
    )


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DataError(path, None, None, f"not valid JSON: {err}") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise DataError(path, None, None, "COCO file needs 'images', 'annotations' and 'categories'")
    return data


def _coco_classes(categories: list[dict]) -> dict[int, str]:
    """Category id -> name, without Roboflow's synthetic root (the supercategory of the others)."""
    supers = {c.get("supercategory") for c in categories}
    return {int(c["id"]): str(c["name"]) for c in categories if not (c.get("name") in supers and c.get("id") == 0)}


def read_coco(root: Path, skips: SkipLog, *, modality: str = "X-ray", source: str = "roboflow") -> Iterator[Record]:
    """Yield one record per image of ``root/{train,valid,test}/_annotations.coco.json``."""
    files = [p for s in SPLIT_NAMES if (p := Path(root) / s / "_annotations.coco.json").is_file()]
    if not files:
        raise DataError(Path(root), None, None, "no <split>/_annotations.coco.json found")
    for path in files:
        yield from _coco_file(path, skips, modality, source)


def _coco_file(path: Path, skips: SkipLog, modality: str, source: str) -> Iterator[Record]:
    data = _load_json(path)
    classes = _coco_classes(data["categories"])
    sizes = {img["id"]: (int(img["width"]), int(img["height"])) for img in data["images"]
             if isinstance(img, dict) and {"id", "width", "height"} <= set(img)}
    boxes: dict[int, list[ROI]] = defaultdict(list)
    for i, ann in enumerate(data["annotations"]):
        roi = _coco_roi(ann, classes)
        if not isinstance(roi, str) and not inside_image(roi.box, sizes.get(ann["image_id"])):
            roi = "box_outside_image"
        if isinstance(roi, str):
            skips.drop(roi, f"{path}, annotation {i}", json.dumps(ann)[:120])
        else:
            boxes[ann["image_id"]].append(roi)
    split = SPLIT_NAMES[path.parent.name]
    for i, img in enumerate(data["images"]):
        skips.seen += 1
        where = f"{path}, image {i}"
        if not isinstance(img, dict) or "file_name" not in img or "id" not in img:
            skips.skip("bad_field:images", where, "image entry needs id and file_name")
            continue
        image = path.parent / img["file_name"]
        if not image.is_file():
            skips.skip("missing_image", where, str(image))
            continue
        skips.kept += 1
        yield _record(source, image, split, boxes.get(img["id"], []), modality, where)


def _coco_roi(ann: object, classes: dict[int, str]) -> ROI | str:
    """An ROI, or the reason the annotation is unusable."""
    if not isinstance(ann, dict) or "bbox" not in ann or "image_id" not in ann:
        return "bad_annotation"
    if ann.get("category_id") not in classes:
        return "unknown_category"
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        return "bad_bbox"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return "degenerate_bbox"
    return ROI(label=classes[ann["category_id"]], box=(x, y, x + w, y + h))


def read_yolo(root: Path, skips: SkipLog, *, modality: str = "X-ray", source: str = "roboflow") -> Iterator[Record]:
    """Yield one record per image listed by ``root/data.yaml`` (``names``; ``train``/``val``/``test``;
    ``path``, the dataset root the splits are relative to, itself relative to the yaml's folder).

    A split is an images folder, a ``.txt`` file with one image path a line (Ultralytics' rule:
    ``./x`` is relative to the file's folder; other relative paths are tried there, then under the
    root), or a list of either. An image's labels are where Ultralytics looks: the path with its
    last ``images`` folder replaced by ``labels``, the suffix by ``.txt``. A listed image that is
    missing, listed twice or not an image is skipped and counted with the list's file and row.
    """
    spec_path = Path(root) / "data.yaml"
    if not spec_path.is_file():
        raise DataError(spec_path, None, None, "YOLO data.yaml not found")
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    if isinstance(spec.get("path"), str):
        root = Path(root) / spec["path"]
    names = spec.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DataError(spec_path, None, "names", "expected a list of class names")
    names = [str(n) for n in names]
    for key, split in (("train", "train"), ("val", "val"), ("test", "test")):
        declared = spec.get(key)
        listed: set[Path] = set()  # images of this split read from lists so far
        for entry in declared if isinstance(declared, list) else [declared]:
            listing = _yolo_listing(Path(root), entry, key, spec_path)
            if listing is not None:
                yield from _yolo_listed(listing, Path(root), split, names, skips, modality, source, listed)
                continue
            # one folder: Roboflow's and Ultralytics' usual places too; in a list, only the folders named
            images_dir = _yolo_images_dir(Path(root), entry, key, defaults=not isinstance(declared, list))
            if images_dir is not None:
                yield from _yolo_split(images_dir, split, names, skips, modality, source,
                                       Path(root) if isinstance(declared, list) else None)


def _yolo_listing(root: Path, declared: object, key: str, spec_path: Path) -> Path | None:
    """The ``.txt`` image list a split names, or None when it names a folder (or nothing)."""
    if not (isinstance(declared, str) and declared.lower().endswith(".txt")):
        return None
    candidates = [root / declared, root / declared.lstrip("./")]
    found = next((c.resolve() for c in candidates if c.is_file()), None)
    if found is None:
        raise DataError(spec_path, None, key, f"image list {declared!r} not found (looked for {candidates[0]})")
    return found


def _yolo_listed(listing: Path, root: Path, split: str, names: list[str], skips: SkipLog, modality: str,
                 source: str, listed: set[Path]) -> Iterator[Record]:
    """The images a ``.txt`` list names, one a line; ids by the path under the root (names may repeat across folders)."""
    with listing.open("rb") as raw:
        lines = list(utf8_lines(raw, listing))
    for n, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry:
            continue
        skips.seen += 1
        where = f"{listing}, row {n}"
        if entry.startswith("./"):
            image = listing.parent / entry[2:]
        elif Path(entry).is_absolute():
            image = Path(entry)
        else:
            image = next((c for c in (listing.parent / entry, root / entry) if c.is_file()), listing.parent / entry)
        image = image.resolve()
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            skips.skip("not_an_image", where, entry[:120])
            continue
        if image in listed:
            skips.skip("listed_twice", where, entry[:120])
            continue
        listed.add(image)
        if not image.is_file():
            skips.skip("missing_image", where, str(image))
            continue
        record = _yolo_image(image, _labels_dir(image.parent) / f"{image.stem}.txt", split, names, skips, modality,
                             source, where, _name_under(image, root))
        if record is not None:
            yield record


def _name_under(image: Path, root: Path) -> str:
    """An image's path under the dataset root (its absolute path when outside it)."""
    try:
        return image.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return image.resolve().as_posix()


def _yolo_images_dir(root: Path, declared: object, key: str, defaults: bool = True) -> Path | None:
    """Roboflow writes ``../train/images``, Ultralytics ``images/train``; accept either relative to the root."""
    candidates = []
    if isinstance(declared, str):
        candidates += [root / declared, root / declared.lstrip("./")]
    if defaults:
        candidates += [root / ("valid" if key == "val" else key) / "images", root / "images" / key]
    return next((c.resolve() for c in candidates if c.is_dir()), None)


def _labels_dir(images_dir: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels`` (both layouts)."""
    parts = list(images_dir.parts)
    if "images" not in parts:
        return images_dir.parent / "labels"
    last = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:last], "labels", *parts[last + 1:])


def _yolo_split(images_dir: Path, split: str, names: list[str], skips: SkipLog, modality: str, source: str,
                named_under: Path | None = None):
    """The images of one folder; ``named_under``: ids by the path under that root (folders of a list)."""
    labels_dir = _labels_dir(images_dir)
    for image in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        skips.seen += 1
        label_file = labels_dir / f"{image.stem}.txt"
        record = _yolo_image(image, label_file, split, names, skips, modality, source, str(label_file),
                             None if named_under is None else _name_under(image, named_under))
        if record is not None:
            yield record


def _yolo_image(image: Path, label_file: Path, split: str, names: list[str], skips: SkipLog, modality: str,
                source: str, where: str, name: str | None = None) -> Record | None:
    """One seen image's record (no label file: no boxes), or None when it is skipped (counted)."""
    size = _image_size(image)
    if size is None:
        skips.skip("unreadable_image", str(image))
        return None
    try:
        rois = list(_yolo_rois(label_file, names, size, skips)) if label_file.is_file() else []
    except DataError as err:
        skips.skip_error(err)
        return None
    skips.kept += 1
    return _record(source, image, split, rois, modality, where if where == str(label_file) else f"{where} ({label_file})",
                   name)


def _yolo_rois(label_file: Path, names: list[str], size: tuple[int, int], skips: SkipLog) -> Iterator[ROI]:
    width, height = size
    with label_file.open("rb") as raw:
        lines = list(utf8_lines(raw, label_file))
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            cls, coords = int(parts[0]), [float(v) for v in parts[1:]]
        except (ValueError, IndexError):
            skips.drop("bad_label_line", f"{label_file}, row {n}", line[:80])
            continue
        if cls not in range(len(names)) or len(coords) < 4 or (len(coords) > 4 and len(coords) % 2):
            skips.drop("bad_label_line", f"{label_file}, row {n}", line[:80])
            continue
        if len(coords) == 4:  # cx cy w h
            cx, cy, w, h = coords
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        else:  # a segmentation polygon: its bounding box
            xs, ys = coords[0::2], coords[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        if not (x2 > x1 and y2 > y1):
            skips.drop("degenerate_bbox", f"{label_file}, row {n}", line[:80])
            continue
        if min(x1, y1) < -0.01 or max(x2, y2) > 1.01:
            skips.drop("box_outside_image", f"{label_file}, row {n}", line[:80])
            continue
        yield ROI(label=names[cls], box=(x1 * width, y1 * height, x2 * width, y2 * height))


def _image_size(image: Path) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as im:
            return im.size
    except (OSError, UnidentifiedImageError):
        return None


def read_voc(root: Path, skips: SkipLog, *, modality: str = "X-ray", source: str = "roboflow") -> Iterator[Record]:
    """Yield one record per Pascal VOC xml under ``root`` (Roboflow puts it beside its image; VOCdevkit
    keeps xml in ``Annotations/`` and images in ``JPEGImages/``)."""
    xmls = sorted(Path(root).rglob("*.xml"))
    if not xmls:
        raise DataError(Path(root), None, None, "no Pascal VOC .xml files found")
    splits = _voc_splits(Path(root))
    for xml in xmls:
        skips.seen += 1
        try:
            record = _voc_record(xml, skips, modality, source, splits)
        except DataError as err:
            skips.skip_error(err)
            continue
        if not record.image.is_file():
            skips.skip("missing_image", str(xml), str(record.image))
            continue
        skips.kept += 1
        yield record


def _voc_splits(root: Path) -> dict[Path, dict[str, str]]:
    """Per VOCdevkit year folder, image id -> split from ``ImageSets/Main/{train,val,test}.txt``."""
    found: dict[Path, dict[str, str]] = {}
    for listing in sorted(root.rglob("ImageSets/Main/*.txt")):
        if listing.stem in SPLIT_NAMES:
            ids = found.setdefault(listing.parents[2], {})
            for line in listing.read_text(encoding="utf-8").split():
                ids.setdefault(line, SPLIT_NAMES[listing.stem])
    return found


def _voc_image(xml: Path, file_name: str) -> tuple[Path, Path | None]:
    """The image an xml names, and the VOCdevkit year folder when the xml sits in ``Annotations/``."""
    if xml.parent.name == "Annotations" and not (xml.parent / file_name).is_file():
        return xml.parent.parent / "JPEGImages" / file_name, xml.parent.parent
    return xml.parent / file_name, None


def _voc_record(xml: Path, skips: SkipLog, modality: str, source: str, splits: dict[Path, dict[str, str]]) -> Record:
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as err:
        raise DataError(xml, None, "xml", str(err)) from None
    file_name = (tree.findtext("filename") or "").strip()
    if not file_name:
        raise DataError(xml, None, "filename", "missing")
    try:
        size = (int(float(tree.findtext("size/width"))), int(float(tree.findtext("size/height"))))
    except (TypeError, ValueError):
        size = None
    rois = []
    for n, obj in enumerate(tree.findall("object"), start=1):
        if (obj.findtext("difficult") or "0").strip() == "1":
            skips.drop("voc_difficult", f"{xml}, object {n}")
            continue
        try:
            box = tuple(float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            skips.drop("bad_bbox", f"{xml}, object {n}")
            continue
        if not (box[2] > box[0] and box[3] > box[1]):
            skips.drop("degenerate_bbox", f"{xml}, object {n}")
            continue
        if not inside_image(box, size):
            skips.drop_error(outside_error(xml, f"object {n}", "bndbox", box, size))
            continue
        rois.append(ROI(label=(obj.findtext("name") or "").strip() or "object", box=box))
    image, devkit = _voc_image(xml, file_name)
    if devkit is not None:
        split = splits.get(devkit, {}).get(Path(file_name).stem, "train")
    else:
        split = SPLIT_NAMES.get(xml.parent.name, "train")
    return _record(source, image, split, rois, modality, str(xml))
