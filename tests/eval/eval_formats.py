"""Writers for small benchmark files in each public on-disk format (no dataset can be downloaded here)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from PIL import Image


def png_bytes(shade: int, size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (shade, shade // 2, 255 - shade)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(shade))
    return path


def write_hf_vqa(root: Path, rows: list[tuple[str, str]], split: str = "test", images: list[bytes] | None = None) -> Path:
    """HF ``flaviagiammarino/vqa-rad`` / ``path-vqa`` layout: data/<split>-00000-of-00001.parquet
    (row i's image: ``images[i]``, else a plain PNG of its own shade)."""
    images = images or [png_bytes(10 + i) for i in range(len(rows))]
    frame = pd.DataFrame(
        {
            "image": [{"bytes": data, "path": f"{i}.jpg"} for i, data in enumerate(images)],
            "question": [q for q, _ in rows],
            "answer": [a for _, a in rows],
        }
    )
    path = root / "data" / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    return root


def write_slake(root: Path, rows: list[dict]) -> Path:
    """SLAKE layout: test.json + imgs/<img_name>; each row needs question, answer, answer_type, q_lang."""
    records = []
    for i, row in enumerate(rows):
        img_name = f"xmlab{i}/source.jpg"
        write_png(root / "imgs" / img_name, 20 + i)
        records.append(
            {
                "img_id": i,
                "img_name": img_name,
                "qid": 1000 + i,
                "location": "Abdomen",
                "modality": row.get("modality", "CT"),
                "content_type": row.get("content_type", "Organ"),
                "base_type": "vqa",
                "triple": ["vhead", "_", "_"],
                **{k: row[k] for k in ("question", "answer", "answer_type", "q_lang")},
            }
        )
    (root / "test.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return root


def write_pmc_vqa(root: Path, rows: list[tuple[str, list[str], str]], image_dir: str = "images") -> Path:
    """PMC-VQA test_2.csv: (question, four choice texts, Answer cell) per row; images in ``image_dir``
    (the release unzips them to figures/)."""
    records = []
    for i, (question, choices, answer) in enumerate(rows):
        figure = f"PMC{i}_fig{i}.jpg"
        write_png(root / image_dir / figure, 30 + i)
        records.append(
            {
                "index": i,
                "Figure_path": figure,
                "Caption": "A caption.",
                "Question": question,
                **{f"Choice {letter}": f" {letter}:{text}" for letter, text in zip("ABCD", choices)},
                "Answer": answer,
                "split": "test",
            }
        )
    pd.DataFrame(records).to_csv(root / "test_2.csv", index=False)
    return root


def write_mmmu(root: Path, subject: str, rows: list[tuple[str, list[str], str, int]], subfield: str = "Pathology") -> Path:
    """MMMU layout: <Subject>/validation-00000-of-00001.parquet; (question, options, answer, n_images)."""
    records = []
    for i, (question, options, answer, n_images) in enumerate(rows):
        rec = {
            "id": f"validation_{subject}_{i + 1}",
            "question": question,
            "options": str(options),
            "explanation": "",
            "img_type": "['Microscopic Images']",
            "answer": answer,
            "topic_difficulty": "Medium",
            "question_type": "multiple-choice" if options else "open",
            "subfield": subfield,
        }
        for n in range(1, 8):
            rec[f"image_{n}"] = {"bytes": png_bytes(40 + n), "path": None} if n <= n_images else None
        records.append(rec)
    path = root / subject / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_parquet(path)
    return root


def write_omnimedvqa(root: Path, dataset: str, rows: list[dict]) -> Path:
    """OmniMedVQA layout: QA_information/Open-access/<dataset>.json + Images/<dataset>/..."""
    records = []
    for i, row in enumerate(rows):
        image_path = f"Images/{dataset}/{i}.png"
        write_png(root / image_path, 50 + i)
        rec = {
            "dataset": dataset,
            "question_id": f"{dataset}_{i}",
            "question_type": row.get("question_type", "Modality Recognition"),
            "question": row["question"],
            "gt_answer": row["gt_answer"],
            "image_path": image_path,
        }
        modality_key = "modality" if "modality" in row else "modality_type"
        rec[modality_key] = row.get(modality_key, "CT(Computed Tomography)")
        rec.update({f"option_{letter}": text for letter, text in zip("ABCD", row["options"])})
        records.append(rec)
    folder = root / "QA_information" / "Open-access"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{dataset}.json").write_text(json.dumps(records), encoding="utf-8")
    return root


def write_saved_hf(root: Path, columns: dict[str, list], splits: tuple[str, ...] | None = ("test",)) -> Path:
    """The folder ``datasets``' ``save_to_disk`` writes: with ``splits``, a DatasetDict
    (``dataset_dict.json`` + one folder per split), else one Dataset; each holds Arrow *stream*
    files listed in ``state.json`` (checked against datasets 4.0's own output)."""
    import pyarrow as pa

    table = pa.table(columns)
    for folder in [root / s for s in splits] if splits else [root]:
        folder.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
            out.write_table(table)
        state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_fingerprint": "0", "_split": None}
        (folder / "state.json").write_text(json.dumps(state), encoding="utf-8")
        (folder / "dataset_info.json").write_text("{}", encoding="utf-8")
    if splits:
        (root / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}), encoding="utf-8")
    return root


def hf_vqa_columns(rows: list[tuple[str, str]]) -> dict[str, list]:
    """VQA-RAD / PathVQA columns with an HF ``Image`` struct per row."""
    return {
        "image": [{"bytes": png_bytes(10 + i), "path": None} for i in range(len(rows))],
        "question": [q for q, _ in rows],
        "answer": [a for _, a in rows],
    }
