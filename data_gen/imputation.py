"""Label imputation for weakly labelled and unlabeled records (paper A.3.1).

"In cases where visual quality is sufficient but labels are ambiguous or sparse, we leverage
high-capacity VLLMs for semantic enrichment and label imputation." A record with no label (a
PubMedVision or LLaVA record whose text names no class, a DeepLesion lesion of type -1, a
Roboflow image without annotations) that passed the image checks is shown, with its modality,
body part and any question/answer it came with, to an OpenAI-compatible endpoint, which names
its main finding. The label then feeds the templated tasks like a source label; the
distractor pool stays the labels the source names itself (it is read before any record is imputed,
so a streamed build knows it up front, and a model's free-text labels never make it grow per record). Calls go through the one :class:`LLMClient`, so they
are cached and a killed build resumes without asking again. A reply that names nothing, or
more than a short label, leaves the record unlabeled and is counted by reason.

Off by default: the embedded offline build never calls a model, and records without labels are
counted as ``unlabeled`` and skipped (those with their own question/answer keep that one sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from medsage.data_gen.instructions import Materialised
from medsage.data_gen.llm_client import LLMAuthError, LLMClient, LLMConfig, LLMError, image_content_async
from medsage.data_gen.records import Record
from medsage.data_gen.verify import json_object
from medsage.reward_fns.answers import normalize

IMPUTED = "imputed"
OUTCOMES = (IMPUTED, "no_label", "too_long", "failed")


@dataclass(frozen=True)
class ImputationConfig:
    enabled: bool = False
    max_label_words: int = 6  # a label is a class name, not a description
    max_tokens: int = 64
    endpoint: LLMConfig = field(default_factory=lambda: LLMConfig(base_url="http://127.0.0.1:8000/v1", model="gpt-4o"))


def imputation_prompt(record: Record, known: list[str], max_words: int) -> str:
    """What the model is asked: the record's context, the labels the source already uses, the reply format."""
    lines = [f"You are an experienced radiologist labelling a medical image (modality: {record.modality or 'unknown'}"
             + (f", body part: {record.body_part}" if record.body_part else "") + ")."]
    if record.question and record.answer:
        lines.append(f"The image was published with this question and answer.\nQuestion: {record.question}\nAnswer: {record.answer}")
    lines.append(f"Name the main abnormal finding in the image as a short class label of at most {max_words} words "
                 "(a lesion type, an organ with a lesion, or a diagnosis), not a sentence.")
    if known:
        lines.append("If one of the labels already used in this dataset fits, use it exactly: " + "; ".join(known) + ".")
    lines.append('Reply with JSON only: {"label": "<label>"}, or {"label": null} if no finding can be named.')
    return "\n".join(lines)


def parse_label(reply: str) -> dict | None:
    """The reply's JSON object when it has a ``label`` that is text or null; None otherwise (retried)."""
    data = json_object(reply)
    if data is None or "label" not in data or not (data["label"] is None or isinstance(data["label"], str)):
        return None
    return data


class Imputer:
    """Names labels for unlabeled records with one model, through the shared client."""

    def __init__(self, client: LLMClient, config: ImputationConfig, dataset_dir: Path, spaces: dict[str, list[str]]):
        self.client, self.config, self.dataset_dir, self.spaces = client, config, Path(dataset_dir), spaces

    async def impute(self, record: Record, image: Materialised) -> tuple[Record, str]:
        """The record with its imputed label (``meta['label_imputed_by']`` names the model) and the outcome, one of :data:`OUTCOMES`."""
        known = self.spaces.get(record.source, [])
        messages = [{"role": "user", "content": [
            await image_content_async(self.dataset_dir / image.path),
            {"type": "text", "text": imputation_prompt(record, known, self.config.max_label_words)}]}]
        try:
            reply = await self.client.chat(messages, temperature=0.0, max_tokens=self.config.max_tokens,
                                           validate=lambda text: parse_label(text) is not None)
        except LLMAuthError:
            raise  # a refused key stops the build; it is not this record's failure
        except LLMError:
            return record, "failed"
        label = (parse_label(reply.text)["label"] or "").strip().strip("\"'.").strip()
        if not normalize(label):
            return record, "no_label"
        if len(label.split()) > self.config.max_label_words:
            return record, "too_long"
        label = next((k for k in known if normalize(k) == normalize(label)), label)  # one spelling per class
        return replace(record, labels=(label,), meta={**record.meta, "label_imputed_by": self.client.config.model}), IMPUTED
