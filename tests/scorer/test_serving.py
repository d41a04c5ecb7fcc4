"""The batched HTTP service on 127.0.0.1, the reward-side client, and compute_score with and
without the consistency reward."""

import http.server
import json
import random
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from medsage.reward_fns import RewardWeights, compute_score, score_response
from medsage.reward_fns.consistency import ConsistencyClient, ConsistencyConfig, ScoreItem, ScorerUnreachable
from medsage.reward_fns.consistency.serve import ScorerServer, ServeConfig
from scorer_data import case

CASES = [case(i, random.Random(7)) for i in range(24)]
ITEMS = [ScoreItem(c["question"], c["positive"]) for c in CASES]


@pytest.fixture(scope="module")
def server(scorer, trained_scorer):
    with ScorerServer(scorer, ServeConfig(str(trained_scorer[0]), port=0, max_batch_size=16, max_wait_ms=50)) as srv:
        yield srv


def _free_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_served_scores_equal_direct_scores(server, scorer):
    client = ConsistencyClient(ConsistencyConfig(server.url, timeout_s=30))
    served = [r.score for r in client.score_many(ITEMS)]
    assert served == pytest.approx(scorer.score(ITEMS), abs=1e-5)
    assert client.score(ITEMS[0].question, ITEMS[0].trajectory).reachable


def test_concurrent_single_requests_are_batched_together(server, scorer):
    before = server.batcher.batches
    client = ConsistencyClient(ConsistencyConfig(server.url, timeout_s=30))
    barrier = threading.Barrier(16)

    def one(item):
        barrier.wait()
        return client.score(item.question, item.trajectory).score

    with ThreadPoolExecutor(16) as pool:
        served = list(pool.map(one, ITEMS[:16]))
    assert served == pytest.approx(scorer.score(ITEMS[:16]), abs=1e-5)
    assert server.batcher.batches - before < 16  # fewer forward batches than requests


def test_bad_request_gets_400_naming_the_field(server):
    body = json.dumps({"items": [{"question": "q", "trajectory": 3}]}).encode()
    request = urllib.request.Request(server.url + "/score", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 400 and "items[0].trajectory" in err.value.read().decode()


def test_unreachable_scorer_under_fail_raises_a_clear_error():
    client = ConsistencyClient(ConsistencyConfig(_free_url(), timeout_s=2, on_unreachable="fail"))
    with pytest.raises(ScorerUnreachable, match="on_unreachable=zero"):
        client.score("q", "t")


def test_unreachable_scorer_under_zero_scores_0_and_counts_it():
    config = {"url": _free_url(), "timeout_s": 2, "on_unreachable": "zero"}
    response = CASES[0]["positive"]
    out = compute_score("x", response, "yes", {"question": CASES[0]["question"]},
                        reward_weights={"accuracy": 0.8, "format": 0.1, "consistency": 0.1}, consistency=config)
    again = compute_score("x", response, "yes", {}, reward_weights={"consistency": 0.1}, consistency=config)
    assert out["consistency"] == 0.0 and out["consistency_unreachable"] == 1.0
    assert again["consistency_unreachable"] == 1.0  # skipped within the cooldown, still counted
    assert out["score"] == pytest.approx(0.8 * out["accuracy"] + 0.1 * out["format"])


def test_a_timeout_counts_as_unreachable():
    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            threading.Event().wait(1.0)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = ConsistencyClient(ConsistencyConfig(f"http://127.0.0.1:{httpd.server_address[1]}", timeout_s=0.2, on_unreachable="zero"))
        result = client.score("q", "t")
        assert (result.score, result.reachable, client.unreachable) == (0.0, False, 1)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_compute_score_with_and_without_the_scorer(server, scorer):
    response, question = CASES[1]["positive"], CASES[1]["question"]
    truth = "yes" if "<ANSWER>Yes" in response else "no"
    plain = compute_score("x", response, truth, {"question": question})
    assert set(plain) == {"score", "accuracy", "format"}
    weights = {"accuracy": 0.8, "format": 0.1, "consistency": 0.1}
    config = {"url": server.url, "timeout_s": 30, "on_unreachable": "fail"}
    out = compute_score("x", response, truth, {"question": question}, reward_weights=weights, consistency=config)
    direct = scorer.score([ScoreItem(question, response)])[0]
    assert out["consistency"] == pytest.approx(direct, abs=1e-5) and out["consistency_unreachable"] == 0.0
    assert out["score"] == pytest.approx(0.8 * out["accuracy"] + 0.1 * out["format"] + 0.1 * direct, abs=1e-5)
    # configured scorer but weight 0: never contacted, result unchanged
    assert compute_score("x", response, truth, {"question": question}, consistency={"url": "http://127.0.0.1:1"}) == plain


def test_a_consistency_weight_without_a_scorer_is_a_configuration_error():
    with pytest.raises(ValueError, match="reward_kwargs.consistency.url"):
        compute_score("x", "<ANSWER>yes</ANSWER>", "yes", None, reward_weights={"consistency": 0.1})
    with pytest.raises(ValueError, match="on_unreachable"):
        compute_score("x", "t", "yes", None, reward_weights={"consistency": 0.1},
                      consistency={"url": "http://127.0.0.1:1", "on_unreachable": "ignore"})
    with pytest.raises(ValueError, match="consistency"):
        score_response("t", "yes", weights=RewardWeights(consistency=0.5))
