"""Build a tiny, randomly initialised Qwen2.5-VL checkpoint entirely offline.

Why: development and CI machines have no GPU and no access to the model hub, yet every part of
MEDSAGE (SFT through LLaMA-Factory, the verl agent loop, rewards, evaluation) must be exercised against
the real Qwen2.5-VL code paths: ``Qwen2_5_VLForConditionalGeneration``, ``Qwen2Tokenizer`` with the
Qwen special tokens and chat template, and ``Qwen2_5_VLProcessor`` expanding ``<|image_pad|>`` to one
token per merged patch. This module writes such a checkpoint in seconds: the weights are random but
deterministic in ``seed``, and the byte-level BPE tokenizer is trained on a built-in English and
radiology corpus written in the LVKC scaffold, so scaffold text encodes compactly and round-trips.

Usage: ``medsage-tiny-model OUTPUT_DIR [--seed N]`` or ``build_tiny_qwen2_5_vl(path, seed=0)``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

# Qwen2.5-VL's special tokens in the order of their ids in the released checkpoints, so relative
# id order (e.g. vision_start < image_pad) matches the real model.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# Qwen2-VL's chat template semantics: a default system turn, string or list content, one
# <|vision_start|><|image_pad|><|vision_end|> block per image item (the processor expands the pad),
# optional "Picture N:" labels (add_vision_id), and the assistant header for generation.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item or 'image_url' in item %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' or 'video' in item %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in item %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinySizes:
    """Size knobs. Defaults keep the checkpoint well under 1 MB of weights and every image in
    56x56..112x112 pixels at 4..16 image tokens, while every structural constraint of Qwen2.5-VL
    holds (GQA, M-RoPE sections, windowed plus full-attention vision blocks, patch merger)."""

    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 2
    text_kv_heads: int = 1
    text_intermediate: int = 128
    vision_hidden: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate: int = 64
    bpe_vocab: int = 3000
    min_pixels: int = 56 * 56
    max_pixels: int = 112 * 112

    @property
    def mrope_section(self) -> list[int]:
        """Temporal/height/width split of the rotary half-dimension in Qwen2.5-VL's proportions
        (16/24/24 of 64 in the released models); the three parts must sum to head_dim / 2."""
        half = self.text_hidden // self.text_heads // 2
        spatial = (half - half // 4) // 2
        return [half - 2 * spatial, spatial, spatial]


# Vocabulary the corpus cycles through, so the BPE learns whole words for the text MEDSAGE handles:
# radiology and pathology terms, question words, and everyday English.
_MEDICAL_WORDS = """
abdomen abdominal abnormal abnormality abscess acute adenoma adenopathy adrenal air airway
alveolar anatomy aneurysm angiography anterior aortic appendicitis appendix arterial artery
ascites atelectasis atrial atrophy attenuation axial benign bilateral biliary biopsy bladder
bleeding blood bone bowel brain breast bronchial bronchus calcification calcified calculus
cancer carcinoma cardiac cardiomegaly carotid cartilage catheter cavity cell cells central
cerebellum cerebral cervical chest chronic cirrhosis clavicle colon colonic congestion
consolidation contrast coronal coronary cortex cortical cranial cyst cystic degenerative
density dermatology diagnosis diaphragm diffuse dilated dilation disease disc distal
diverticulitis duct duodenum echo edema effusion embolism emphysema endoscopy enhancement
epithelium esophagus fat fatty femur fibrosis fistula fluid focal fracture frontal gallbladder
gallstone gland glioma granuloma gray hematoma hemorrhage hepatic hernia hilar hip histology
humerus hydronephrosis hyperdense hyperintense hypertrophy hypodense hypointense ileum iliac
infarct infarction infection infiltrate inflammation inguinal intestinal intestine
intracranial ischemia jejunum joint kidney knee lateral lesion ligament lobe lobar lumbar
lumen lung lymph lymphoma malignancy malignant mammography mass medial mediastinal
mediastinum meningioma metastasis metastatic modality mucosa muscle myocardial necrosis
neoplasm nerve neural nodular nodule normal obstruction occipital opacity orbit organ osseous
ovarian ovary pancreas pancreatic parenchyma parietal pathology pelvic pelvis pericardial
peripheral peritoneal pleural pneumonia pneumothorax polyp portal posterior prostate proximal
pulmonary radiograph radiology rectum renal rib sagittal sclerosis sinus skeletal skull soft
spinal spine spleen splenic stenosis stomach stone stroke subdural swelling temporal tendon
thickening thoracic thorax thrombosis thrombus thyroid tissue trachea tuberculosis tumor
ultrasound ureter urinary uterus vascular vein venous ventricle ventricular vertebra
vertebral vessel wall white
"""
_ENGLISH_WORDS = """
about above across after again against all almost along also although always among amount
analyse analysis and another answer any appear appears are area around as ask assistant at based be
because been before behind being below best between both bottom but by can case center
certain change check choose clear clearly close common compare compared consider consistent
contain contains correct could describe described detail did different do does during each
early either enough evidence exactly example except explain false few find finding findings
first following for found from further given good grounding has have helpful here high how however
identify if image images important in include including incorrect indicate indicates inside
into is it its knowledge known label large larger largest least left less level like likely
located location look low lower main make many may mean measure medical might more most
much must near need next no none not note number observe of on one only option options or
order other our out outside over part patient picture point position possible present
previous question reason reasoning recall region result retry review right same see seen
select several shape should show shown shows side sign similar since single size small system
smaller some step structure such suggest suggests support sure take than that the their
them then there therefore these they thin this those three through to top true try two
under upper use used user very visible visual was we well were what when where which while white
why with within without would yes you your
"""


def _corpus() -> Iterator[str]:
    """Deterministic training text: radiology findings, VQA questions and answers, and complete
    LVKC-scaffolded responses with 0-1000 grid boxes and points, plus plain English."""
    medical, english = _MEDICAL_WORDS.split(), _ENGLISH_WORDS.split()
    for words in (medical, english):
        for i in range(0, len(words), 8):
            chunk = words[i : i + 8]
            yield " ".join(chunk) + "."
            yield " ".join(w.capitalize() for w in chunk) + "?"
            yield "".join(f"<VISUAL>{w}</VISUAL>" for w in chunk)
    organs = ["liver", "lung", "kidney", "spleen", "pancreas", "heart", "brain", "bladder", "colon",
              "stomach", "gallbladder", "adrenal gland", "aorta", "breast", "spine", "prostate",
              "thyroid", "lymph node", "bowel", "bone", "uterus", "ovary", "trachea", "esophagus"]
    findings = ["lesion", "mass", "nodule", "cyst", "tumor", "fracture", "effusion", "pneumothorax",
                "consolidation", "opacity", "calcification", "hemorrhage", "infarct", "edema",
                "abscess", "metastasis", "atelectasis", "stone", "polyp", "enlargement"]
    modalities = ["CT", "MRI", "X-ray", "ultrasound", "PET", "chest radiograph", "T1-weighted MRI",
                  "T2-weighted MRI", "contrast-enhanced CT", "pathology slide", "microscopy image"]
    planes = ["axial", "coronal", "sagittal", "frontal", "lateral"]
    sides = ["left", "right", "bilateral"]
    levels = ["upper", "lower", "middle"]
    looks = ["small", "large", "round", "irregular", "hypodense", "hyperdense", "enhancing",
             "well-defined", "ill-defined", "heterogeneous", "homogeneous", "cystic", "solid"]
    for i, (organ, finding) in enumerate(itertools.product(organs, findings)):
        modality, plane = modalities[i % len(modalities)], planes[i % len(planes)]
        side, level, look = sides[i % 3], levels[(i // 3) % 3], looks[i % len(looks)]
        y1, x1 = (i * 37) % 900, (i * 53) % 900
        y2, x2 = y1 + 20 + (i * 7) % 80, x1 + 20 + (i * 11) % 80
        answer = "yes" if i % 2 else "no"
        # Chat turns as the BPE sees them between special tokens: "<|im_start|>" + "user\n..." etc.
        yield "system\nYou are a helpful assistant."
        yield f"The {plane} {modality} of the {organ} shows a {look} {finding} in the {side} {level} region."
        yield f"user\nIs there a {finding} in the {organ}? Answer yes or no."
        yield f"user\nWhich side is the {finding} on, left or right? Where is the {organ} located?"
        yield (
            f"assistant\nThis is an {plane} {modality} image of the {organ}. "
            f'<LOC>{{"box_2d": [{y1}, {x1}, {y2}, {x2}], "label": "{organ} {finding}"}}, '
            f'{{"point": [{(y1 + y2) // 2}, {(x1 + x2) // 2}], "label": "{finding}"}}</LOC>'
            f"<VISUAL>A {look} {finding} is seen in the {side} {level} part of the {organ}.</VISUAL>"
            f"<KNOWLEDGE>A {look} {finding} of the {organ} on {modality} is a common finding; "
            f"its location and appearance guide the diagnosis.</KNOWLEDGE>"
            f"<CON>The image {'shows' if answer == 'yes' else 'does not show'} a {finding}, "
            f"so the answer is {answer}.</CON><ANSWER>{answer}</ANSWER>"
        )
        options = [organs[(i + k) % len(organs)] for k in range(4)]
        letter = "ABCD"[i % 4]
        yield (
            f"Question: Which organ has the {finding}?\n"
            + "\n".join(f"{c}. {o}" for c, o in zip("ABCD", options))
            + f"\nAnswer: {letter}. The answer is ({letter}) {options[i % 4]}."
        )


def _train_tokenizer(sizes: TinySizes) -> Qwen2Tokenizer:
    """Train a byte-level BPE with Qwen2's own pipeline (NFC, Qwen digit/word split, byte level),
    then wrap it in ``Qwen2Tokenizer`` so the saved tokenizer is the same class as the real one.
    The Qwen special tokens are appended after the learned vocabulary, as in the real model."""
    backend = Tokenizer.from_str(Qwen2Tokenizer().backend_tokenizer.to_str())
    trainer = trainers.BpeTrainer(
        vocab_size=sizes.bpe_vocab,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    vocab.update({tok: len(vocab) + i for i, tok in enumerate(SPECIAL_TOKENS)})
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in model["merges"]],
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)],
        model_max_length=32768,
        chat_template=CHAT_TEMPLATE,
    )


def _config(sizes: TinySizes, tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL config whose token ids come from the tokenizer. The embedding is padded to a
    multiple of 64 beyond the tokenizer, as in the released checkpoints (151936 > 151665), so code
    that wrongly assumes ``vocab_size == len(tokenizer)`` fails here as it would on the real model."""
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": sizes.text_hidden,
            "intermediate_size": sizes.text_intermediate,
            "num_hidden_layers": sizes.text_layers,
            "num_attention_heads": sizes.text_heads,
            "num_key_value_heads": sizes.text_kv_heads,
            "max_position_embeddings": 32768,
            "max_window_layers": sizes.text_layers,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": sizes.mrope_section,
            },
            "bos_token_id": ids[PAD_TOKEN],
            "eos_token_id": ids[EOS_TOKEN],
            "pad_token_id": ids[PAD_TOKEN],
            "dtype": "float32",
        },
        vision_config={
            "depth": sizes.vision_depth,
            "hidden_size": sizes.vision_hidden,
            "intermediate_size": sizes.vision_intermediate,
            "num_heads": sizes.vision_heads,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "out_hidden_size": sizes.text_hidden,
            "fullatt_block_indexes": [sizes.vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        dtype="float32",
    )


def build_tiny_qwen2_5_vl(output_dir: str | Path, seed: int = 0, sizes: TinySizes = TinySizes()) -> Path:
    """Write a loadable tiny Qwen2.5-VL checkpoint (model, tokenizer, processor, generation config)
    to ``output_dir`` and return it. Same ``seed`` gives byte-identical files; the caller's global
    torch RNG state is left untouched."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(sizes)
    config = _config(sizes, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[config.text_config.eos_token_id, config.text_config.pad_token_id],
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out)
    pixels = {"shortest_edge": sizes.min_pixels, "longest_edge": sizes.max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=dict(pixels)),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=dict(pixels)),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``medsage-tiny-model``."""
    parser = argparse.ArgumentParser(description="Build a tiny random Qwen2.5-VL checkpoint offline.")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_tiny_qwen2_5_vl(args.output_dir, seed=args.seed))


if __name__ == "__main__":
    main()
