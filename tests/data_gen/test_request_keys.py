"""Cache keys of requests that carry images: keyed by the image's digest, equal on either side of the wire."""

import hashlib
import json

from medsage.data_gen.llm_client import image_content, request_key

PARAMS = {"temperature": 0.0, "max_tokens": 16}


def _messages(part: dict, text: str = "what is seen?") -> list[dict]:
    return [{"role": "user", "content": [part, {"type": "text", "text": text}]}]


def _png(path, payload: bytes):
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + payload)
    return path


def test_key_is_the_same_for_the_sent_request_as_for_the_built_one(tmp_path):
    built = _messages(image_content(_png(tmp_path / "a.png", b"pixels")))
    on_the_wire = json.loads(json.dumps(built))  # what the server (and a resumed run's test) sees
    assert type(on_the_wire[0]["content"][0]["image_url"]["url"]) is str
    assert request_key("m", built, PARAMS) == request_key("m", on_the_wire, PARAMS)


def test_key_changes_with_the_image_bytes_text_model_and_params(tmp_path):
    a = _messages(image_content(_png(tmp_path / "a.png", b"pixels")))
    b = _messages(image_content(_png(tmp_path / "b.png", b"pixelz")))
    keys = {
        request_key("m", a, PARAMS),
        request_key("m", b, PARAMS),
        request_key("m", _messages(a[0]["content"][0], "another question"), PARAMS),
        request_key("other", a, PARAMS),
        request_key("m", a, {**PARAMS, "temperature": 0.7}),
    }
    assert len(keys) == 5


def test_image_detail_is_part_of_the_key(tmp_path):
    part = image_content(_png(tmp_path / "a.png", b"pixels"))
    low = {**part, "image_url": {**part["image_url"], "detail": "low"}}
    assert request_key("m", _messages(part), PARAMS) != request_key("m", _messages(low), PARAMS)


def test_text_only_requests_keep_their_keys():
    """Caches of text-only calls (evaluation judges) stay valid across the image-digest keying."""
    messages = [{"role": "user", "content": "hello"}]
    blob = json.dumps({"model": "m", "messages": messages, "params": PARAMS}, sort_keys=True, ensure_ascii=False)
    assert request_key("m", messages, PARAMS) == hashlib.sha256(blob.encode()).hexdigest()
