"""``medsage-eval leakage``: benchmark questions whose image (or a resized, re-encoded copy of it)
is in a training set given as a LLaMA-Factory sharegpt json or a folder of images."""

import json
import shutil
from pathlib import Path

import pytest
from eval_formats import write_hf_vqa
from PIL import Image

from medsage.data_gen.leakage import hash_training_images
from medsage.data_gen.phantom import write_phantom_benchmark
from medsage.eval.benchmarks import load_benchmark
from medsage.eval.cli import main
from medsage.eval.leakage import leaked_items

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "eval" / "phantom_tiny.yaml"


def _jpeg_half_size(src: Path, dst: Path) -> Path:
    """A copy as a redistributor might leave it: half the size, JPEG quality 80."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(dst, format="JPEG", quality=80)
    return dst


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Phantom benchmark (6 CT slices) + a VQA-RAD parquet whose two questions share phantom image 1;
    an SFT export holding an exact copy of image 1, a JPEG copy of image 4 and 4 other patients."""
    root = tmp_path_factory.mktemp("leak")
    bench = write_phantom_benchmark(root / "phantom", n=6, seed=0)
    bench_images = sorted((bench / "imgs").rglob("*.png"))
    others = sorted((write_phantom_benchmark(root / "other_patients", n=4, seed=1) / "imgs").rglob("*.png"))
    vqa_rad = write_hf_vqa(root / "vqa_rad", [("Is there a lesion?", "yes"), ("Which organ?", "liver")],
                           images=[bench_images[1].read_bytes()] * 2)
    sft = root / "sft"
    (sft / "images").mkdir(parents=True)
    shutil.copy(bench_images[1], sft / "images" / "copy.png")
    _jpeg_half_size(bench_images[4], sft / "images" / "reencoded.jpg")
    for i, path in enumerate(others):
        shutil.copy(path, sft / "images" / f"other_{i}.png")
    names = ["images/copy.png", "images/reencoded.jpg", *(f"images/other_{i}.png" for i in range(len(others)))]
    records = [{"messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "a"}],
                "images": [name]} for name in names]
    (sft / "sage_sft.json").write_text(json.dumps(records))
    return root, bench, vqa_rad, sft


def test_leaked_items_finds_exact_and_reencoded_copies_only(data):
    _, bench, _, sft = data
    items = load_benchmark("phantom", bench)
    leaks = leaked_items(items, hash_training_images(sft / "sage_sft.json"))
    assert [leak.id for leak in leaks] == [items[1].id, items[4].id]
    exact, reencoded = leaks
    assert exact.distance == 0 and exact.train_image.endswith("copy.png") and exact.image == 0
    assert 0 < reencoded.distance <= 20 and reencoded.train_image.endswith("reencoded.jpg")


def test_cli_leakage_prints_a_table_per_benchmark_and_writes_the_ids(data, tmp_path, capsys):
    _, bench, vqa_rad, sft = data
    out = tmp_path / "report"
    code = main(["leakage", str(RECIPE), "--train", str(sft / "sage_sft.json"),
                 f"benchmarks=[{{name: phantom, path: {bench}}}, {{name: vqa_rad, path: {vqa_rad}}}]",
                 f"output_dir={out}"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| phantom | 6 | 2 | 33.3 |" in printed and "| vqa_rad | 2 | 2 | 100.0 |" in printed
    report = json.loads((out / "leakage.json").read_text())
    assert report["max_distance"] == 20 and report["train"] == [str(sft / "sage_sft.json")]
    ids = {b["benchmark"]: b["leaked_ids"] for b in report["benchmarks"]}
    assert ids == {"phantom": ["phantom-1", "phantom-4"], "vqa_rad": [f"vqa_rad-{p}-{r}" for p in
                                                                      ["test-00000-of-00001"] for r in (0, 1)]}


def test_cli_leakage_takes_a_folder_and_an_output_file(data, tmp_path, capsys):
    _, bench, _, sft = data
    out = tmp_path / "ids.json"
    code = main(["leakage", str(RECIPE), "--train", str(sft / "images"), "--out", str(out),
                 f"benchmarks=[{{name: phantom, path: {bench}, limit: 3}}]"])
    assert code == 0 and "| phantom | 3 | 1 | 33.3 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["benchmarks"][0]["leaked_ids"] == ["phantom-1"]


def test_cli_leakage_names_a_missing_training_image(data, tmp_path, capsys):
    _, bench, _, sft = data
    broken = tmp_path / "sft.json"
    records = json.loads((sft / "sage_sft.json").read_text())
    broken.write_text(json.dumps(records))  # its image paths now resolve under tmp_path, where none exist
    code = main(["leakage", str(RECIPE), "--train", str(broken), f"benchmarks=[{{name: phantom, path: {bench}}}]",
                 f"output_dir={tmp_path / 'out'}"])
    assert code == 2
    assert f"{broken}, row 0, field 'images': cannot read image" in capsys.readouterr().err
    code = main(["leakage", str(RECIPE), "--train", str(broken), "--media-dir", str(sft),
                 f"benchmarks=[{{name: phantom, path: {bench}}}]", f"output_dir={tmp_path / 'out'}"])
    assert code == 0
