"""The tiny Qwen2.5-VL must behave like the real checkpoint wherever MEDSAGE touches it: Auto classes
load it, the tokenizer and chat template produce Qwen's exact prompt format, the processor expands
images into the right number of pad tokens, generation works, and LLaMA-Factory trains it on CPU."""

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from llamafactory_run import train_sft

from medsage.plugins.tiny_model import SPECIAL_TOKENS, build_tiny_qwen2_5_vl, main

LVKC = (
    "This is an axial CT image of the abdomen. "
    '<LOC>{"box_2d": [412, 230, 530, 388], "label": "liver lesion"}, {"point": [471, 309], "label": "lesion"}</LOC>'
    "<VISUAL>A hypodense round lesion is seen in the right upper part of the liver.</VISUAL>"
    "<KNOWLEDGE>Hypodense liver lesions on CT are commonly cysts or metastases.</KNOWLEDGE>"
    "<CON>The image shows a lesion in the liver, so the answer is yes.</CON><ANSWER>yes</ANSWER>"
)
TAGS = [f"<{t}>" for t in ("LOC", "VISUAL", "KNOWLEDGE", "CON", "ANSWER")]
TAGS += [t.replace("<", "</") for t in TAGS]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_is_byte_identical_and_leaves_global_rng_alone(tiny_model_dir, tmp_path):
    state = torch.get_rng_state()
    again = build_tiny_qwen2_5_vl(tmp_path / "again", seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    expected = _files(tiny_model_dir)
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "processor_config.json", "chat_template.jinja"} <= set(expected)
    assert _files(again) == expected


def test_cli_with_other_seed_changes_weights_only(tiny_model_dir, tmp_path, capsys):
    main([str(tmp_path / "seed1"), "--seed", "1"])
    out = Path(capsys.readouterr().out.strip())
    assert out == tmp_path / "seed1"
    a, b = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    assert not torch.equal(a["lm_head.weight"], b["lm_head.weight"])
    assert (out / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()


def test_config_ids_agree_with_tokenizer(tiny_model_dir):
    config = AutoConfig.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(SPECIAL_TOKENS)
    assert all(tok.convert_ids_to_tokens(i) == t for t, i in ids.items())
    assert config.image_token_id == ids["<|image_pad|>"]
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert tok.eos_token == "<|im_end|>" and config.text_config.eos_token_id == tok.eos_token_id
    assert tok.pad_token == "<|endoftext|>" and config.text_config.pad_token_id == tok.pad_token_id
    assert 2000 <= len(tok) <= config.text_config.vocab_size < len(tok) + 64
    assert sum(config.text_config.rope_parameters["mrope_section"]) * 2 == (
        config.text_config.hidden_size // config.text_config.num_attention_heads
    )
    gen = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [ids["<|im_end|>"], ids["<|endoftext|>"]]


def test_tokenizer_round_trips_lvkc_compactly(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    ids = tok(LVKC)["input_ids"]
    assert tok.decode(ids) == LVKC
    assert len(ids) < len(LVKC) / 2.5  # trained on this register: mostly whole words
    for tag in TAGS:
        pieces = tok.tokenize(tag)
        assert 1 <= len(pieces) <= 3 and tok.convert_tokens_to_string(pieces) == tag
    for word in ("yes", " no", " lesion", " liver", " lung", " left", " right", " upper", " lower", "label"):
        assert len(tok.tokenize(word)) == 1, word
    # Qwen's pre-tokenizer splits numbers into single digits, so grid coordinates never fuse.
    assert tok.tokenize("[412, 230]") == ["[", "4", "1", "2", ",", "Ġ", "2", "3", "0", "]"]
    assert tok.tokenize("<|im_start|>user<|image_pad|>") == ["<|im_start|>", "user", "<|image_pad|>"]


def test_chat_template_matches_qwen2_vl_format(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": "<ANSWER>left</ANSWER>"},
    ]
    assert tok.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Where?<|im_end|>\n"
        "<|im_start|>assistant\n<ANSWER>left</ANSWER><|im_end|>\n"
    )


@pytest.mark.parametrize(("side", "pads"), [(64, 4), (112, 16)])
def test_processor_expands_image_pads_per_merged_patch(tiny_model_dir, side, pads):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a lesion?"}]}],
        add_generation_prompt=True,
    )
    batch = processor(text=[prompt], images=[Image.new("RGB", (side, side))], return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch["input_ids"] == image_id).sum()) == pads
    assert int(batch["image_grid_thw"].prod()) == pads * 4 == batch["pixel_values"].shape[0]


def test_generate_from_image_and_text(tiny_model_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration" and model.dtype == torch.float32
    image = Image.radial_gradient("L").resize((64, 64)).convert("RGB")
    content = [{"type": "image", "image": image}, {"type": "text", "text": "Is it normal?"}]
    messages = [{"role": "user", "content": content}]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 1 <= new.numel() <= 8
    assert (new < model.config.text_config.vocab_size).all()


def _write_sharegpt_dataset(root: Path) -> None:
    """Four single-image LVKC samples in LLaMA-Factory's multimodal sharegpt layout."""
    (root / "images").mkdir(parents=True)
    records = []
    for i, (organ, answer) in enumerate([("liver", "yes"), ("lung", "no"), ("kidney", "yes"), ("spleen", "no")]):
        Image.new("RGB", (64 + 16 * i, 64), (40 * i, 200 - 40 * i, 90)).save(root / "images" / f"{i}.png")
        reply = (
            f'<LOC>{{"box_2d": [{100 + i}, 200, 300, 400], "label": "{organ} lesion"}}</LOC>'
            f"<VISUAL>A round lesion in the {organ}.</VISUAL><KNOWLEDGE>Such lesions are common.</KNOWLEDGE>"
            f"<CON>So the answer is {answer}.</CON><ANSWER>{answer}</ANSWER>"
        )
        records.append({
            "messages": [
                {"role": "user", "content": f"<image>Is there a lesion in the {organ}?"},
                {"role": "assistant", "content": reply},
            ],
            "images": [f"images/{i}.png"],
        })
    (root / "lvkc.json").write_text(json.dumps(records))
    (root / "dataset_info.json").write_text(json.dumps({
        "lvkc": {
            "file_name": "lvkc.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        }
    }))


def test_llamafactory_trains_two_steps_on_cpu(tiny_model_dir, tmp_path):
    data, out = tmp_path / "data", tmp_path / "sft"
    _write_sharegpt_dataset(data)
    losses = train_sft(tiny_model_dir, data, "lvkc", out, cutoff_len=512)
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    vision = {k for k in before if "visual." in k}  # transformers 5.5 saves them as model.visual.*
    assert "lm_head.weight" in changed and "model.layers.1.mlp.up_proj.weight" in changed
    assert vision and not changed & vision  # freeze_vision_tower (and the default frozen merger) held
