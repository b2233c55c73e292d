"""Judges: offline signals, order-swap bias, panel consensus/kappa, breaker, endpoint fallback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmops.judges import (
    CircuitBreaker,
    EndpointChain,
    GroundingJudge,
    JudgePanel,
    JudgeSample,
    JudgeUnavailable,
    LLMJudge,
    RougeJudge,
    TokenF1Judge,
    fleiss_kappa,
    judge_both_orders,
    parse_preference,
)

CONTEXT = ("The Treaty of Westphalia was signed in 1648 in Osnabrueck and Muenster, "
           "ending the Thirty Years War.")
GOOD = "The Treaty of Westphalia was signed in 1648, ending the Thirty Years War."
BAD = "It was signed in 1815 at the Congress of Vienna by Napoleon after Waterloo."


def sample(sid: str = "s1", a: str = GOOD, b: str = BAD) -> JudgeSample:
    return JudgeSample(sample_id=sid, question="When was the Treaty of Westphalia signed?",
                       reference="It was signed in 1648, ending the Thirty Years War.",
                       contexts=[CONTEXT], answer_a=a, answer_b=b)


@pytest.mark.parametrize("judge", [TokenF1Judge(), GroundingJudge(), RougeJudge()],
                         ids=lambda j: j.name)
def test_offline_judges_prefer_the_correct_grounded_answer(judge) -> None:
    assert judge_both_orders(judge, sample(a=GOOD, b=BAD)) == "a"
    assert judge_both_orders(judge, sample(a=BAD, b=GOOD)) == "b"
    assert judge_both_orders(judge, sample(a=GOOD, b=GOOD)) == "tie"


def test_grounding_penalises_unsupported_padding() -> None:
    padded = GOOD + " Also the moon is made of cheese according to Napoleon."
    assert judge_both_orders(GroundingJudge(), sample(a=GOOD, b=padded)) == "a"


def test_judge_without_reference_raises_a_clear_error() -> None:
    s = JudgeSample("x", "q?", reference="", answer_a="a", answer_b="b")
    with pytest.raises(ValueError, match="no reference"):
        judge_both_orders(TokenF1Judge(), s)


class FirstBiased:
    name = "first_biased"

    def prefer(self, question, reference, contexts, first, second):
        return "first"


def test_positionally_biased_judge_is_a_tie_under_swap() -> None:
    assert judge_both_orders(FirstBiased(), sample()) == "tie"


class Scripted:
    """Fixed verdict per sample id, independent of the order (so the swap keeps it)."""

    def __init__(self, name: str, script: dict[str, str]) -> None:
        self.name, self.script = name, script

    def prefer(self, question, reference, contexts, first, second):
        v = self.script[question]
        if v == "fail":
            raise RuntimeError("endpoint down")
        if v == "tie":
            return "tie"
        return "first" if (first == "A") == (v == "a") else "second"


def test_panel_consensus_and_fleiss_kappa_on_a_hand_example() -> None:
    # 4 samples x 3 judges. s1: a,a,a  s2: a,a,b  s3: b,b,b  s4: a,b,tie
    script = {"s1": "aaa", "s2": "aab", "s3": "bbb", "s4": ["a", "b", "tie"]}
    judges = [Scripted(f"j{i}", {k: v[i] for k, v in script.items()}) for i in range(3)]
    samples = [JudgeSample(k, k, "ref", answer_a="A", answer_b="B") for k in script]
    res = JudgePanel(judges).run(samples)
    assert res.sample_consensus == {"s1": "a", "s2": "a", "s3": "b", "s4": "tie"}
    assert (res.a_wins, res.b_wins, res.ties) == (2, 1, 1)
    assert res.consensus == "a" and res.verdict == "champion"
    # by hand: P_i = 1, 1/3, 1, 0 -> P_bar = 7/12; p = (6/12, 5/12, 1/12) -> P_e = 62/144
    expected = (7 / 12 - 62 / 144) / (1 - 62 / 144)
    assert res.agreement == pytest.approx(expected)
    assert res.agreement == pytest.approx(fleiss_kappa([[3, 0, 0], [2, 1, 0], [0, 3, 0],
                                                        [1, 1, 1]]))
    assert res.sign_test_p == pytest.approx(1.0)  # 2 vs 1: nowhere near significant
    d = res.to_dict()
    assert d["n_judged"] == 4 and d["n_failed"] == 0 and d["verdict"] == "champion"
    frame = res.to_frame()
    assert list(frame["consensus"]) == ["a", "a", "b", "tie"]
    assert set(frame.columns) >= {"sample_id", "j0", "j1", "j2", "errors"}


def test_panel_records_a_failing_judge_per_sample() -> None:
    judges = [Scripted("ok", {"s1": "b", "s2": "b"}), Scripted("flaky", {"s1": "b", "s2": "fail"})]
    samples = [JudgeSample(k, k, "ref", answer_a="A", answer_b="B") for k in ("s1", "s2")]
    res = JudgePanel(judges, labels=("champion", "challenger")).run(samples)
    assert res.n_failed == 1 and res.failed_sample_ids == ["s2"]
    assert res.failures[0]["judge"] == "flaky" and "endpoint down" in res.failures[0]["reason"]
    assert res.verdict == "challenger" and res.n_judged == 2
    assert res.to_frame().set_index("sample_id").at["s2", "errors"].startswith("flaky")


def test_duplicate_sample_ids_are_reported_not_merged() -> None:
    judges = [Scripted("j", {"s1": "a"})]
    samples = [JudgeSample("s1", "s1", "ref", answer_a="A", answer_b="B")] * 2
    res = JudgePanel(judges).run(samples)
    assert res.n_judged == 1 and res.failed_sample_ids == ["s1"]
    assert "duplicate" in res.failures[0]["reason"]


def test_sign_test_on_a_clear_lead() -> None:
    judges = [Scripted("j", {f"s{i}": "b" for i in range(8)})]
    res = JudgePanel(judges).run([JudgeSample(f"s{i}", f"s{i}", "r", answer_a="A", answer_b="B")
                                  for i in range(8)])
    assert res.verdict == "challenger" and res.sign_test_p == pytest.approx(2 / 256)


def test_fleiss_kappa_undefined_and_perfect() -> None:
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([[1, 0, 0]]) is None
    assert fleiss_kappa([[3, 0, 0], [3, 0, 0]]) == 1.0
    assert fleiss_kappa([[3, 0, 0], [0, 3, 0]]) == pytest.approx(1.0)


def test_parse_preference_is_strict() -> None:
    assert parse_preference(" FIRST ") == "first"
    assert parse_preference("Verdict: tie.") == "tie"
    for bad in ("The first one is better", "FIRST or SECOND", ""):
        with pytest.raises(ValueError):
            parse_preference(bad)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_n_failures_and_half_opens_after_reset() -> None:
    clock = FakeClock()
    br = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=clock)
    for _ in range(2):
        br.record_failure()
    assert br.state == "closed" and br.allow()
    br.record_failure()
    assert br.state == "open" and not br.allow()
    clock.t = 9.9
    assert br.state == "open"
    clock.t = 10.0
    assert br.state == "half_open" and br.allow()
    br.record_failure()  # the trial failed: open for another period
    assert br.state == "open" and br.to_dict()["state"] == "open"
    clock.t = 20.0
    assert br.state == "half_open"
    br.record_success()
    assert br.to_dict() == {"state": "closed", "failures": 0, "failure_threshold": 3,
                            "reset_after_s": 10}


def test_endpoint_config_resolves_key_env_and_chain_settings(monkeypatch) -> None:
    cfg = {"name": "j", "base_url": "http://127.0.0.1:1/v1", "model": "m",
           "api_key_env": "JUDGE_KEY_FOR_TEST", "timeout_s": 7.0, "max_retries": 3}
    with pytest.raises(ValueError, match="JUDGE_KEY_FOR_TEST is not set"):
        LLMJudge.from_endpoints([cfg])
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "secret")
    judge = LLMJudge.from_endpoints([cfg])
    assert judge.chain.endpoints[0].api_key == "secret"
    assert (judge.chain.timeout_s, judge.chain.max_retries) == (7.0, 3)
    with pytest.raises(ValueError, match="missing \\['model'\\]"):
        LLMJudge.from_endpoints([{"name": "x", "base_url": "http://h"}])
    assert [j.name for j in JudgePanel.default().judges] == ["token_f1", "grounding",
                                                             "rouge_l_char"]
    assert JudgePanel.default([cfg]).judges[-1].name == "llm"


def test_chain_retries_with_backoff_then_falls_back_and_skips_open_breakers() -> None:
    sleeps: list[float] = []
    calls: list[str] = []

    def call(ep, system, prompt, timeout):
        calls.append(ep.name)
        if ep.name == "down":
            raise ConnectionError("refused")
        return "SECOND"

    chain = EndpointChain([{"name": "down", "base_url": "http://x", "model": "m"},
                           {"name": "up", "base_url": "http://y", "model": "m"}],
                          max_retries=2, backoff_s=0.5, failure_threshold=3,
                          sleep=sleeps.append, clock=FakeClock(), call=call)
    assert chain.complete("sys", "p", parse=parse_preference) == "second"
    assert calls == ["down", "down", "down", "up"] and sleeps == [0.5, 1.0]
    assert chain.breaker_states()["down"]["state"] == "open"
    calls.clear()
    assert chain.complete("sys", "p", parse=parse_preference) == "second"
    assert calls == ["up"]  # open breaker: not even tried


# --------------------------------------------------------------------------- real HTTP + AutoGen


def _completion(content: str, model: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }).encode()


def _serve(delay_s: float, requests: list[str]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(self.path)
            time.sleep(delay_s)
            prompt = body["messages"][-1]["content"]
            first = prompt.split("FIRST answer:")[1].split("SECOND answer:")[0]
            verdict = "FIRST" if "1648" in first else "SECOND"
            payload = _completion(verdict, body["model"])
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (timeout)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


@pytest.fixture
def servers() -> Iterator[dict[str, tuple[str, list[str]]]]:
    slow_req: list[str] = []
    fast_req: list[str] = []
    slow, slow_url = _serve(6.0, slow_req)  # well past every timeout below
    fast, fast_url = _serve(0.0, fast_req)
    yield {"slow": (slow_url, slow_req), "fast": (fast_url, fast_req)}
    for s in (slow, fast):
        s.shutdown()
        s.server_close()


def test_llm_judge_falls_back_to_second_endpoint_when_first_times_out(servers) -> None:
    slow_url, slow_req = servers["slow"]
    fast_url, fast_req = servers["fast"]
    judge = LLMJudge.from_endpoints(
        [{"name": "slow", "base_url": slow_url, "model": "tiny-judge", "api_key": "k"},
         {"name": "fast", "base_url": fast_url, "model": "tiny-judge", "api_key": "k"}],
        timeout_s=2.0, max_retries=0, failure_threshold=1, reset_after_s=600)
    judge.prefer("q", "r", [], "signed in 1648", "no idea")  # first call: slow times out
    assert judge.chain.last_endpoint == "fast"
    assert judge.chain.last_errors == ["slow attempt 1: timeout after 2.0s"]
    res = JudgePanel([judge]).run([sample("s1", a=GOOD, b=BAD)])
    assert res.failures == []
    assert res.verdicts["s1"]["llm"] == "a"  # both orders answered by the fast server
    assert len(slow_req) == 1 and len(fast_req) == 3  # slow breaker opened after its timeout
    assert judge.chain.last_endpoint == "fast"
    assert res.breakers["llm/slow"]["state"] == "open"
    assert res.breakers["llm/fast"]["state"] == "closed"


def test_panel_reports_failed_samples_when_every_endpoint_fails(servers) -> None:
    slow_url, _ = servers["slow"]
    judge = LLMJudge.from_endpoints(
        [{"name": "slow", "base_url": slow_url, "model": "tiny-judge"},
         {"name": "dead", "base_url": "http://127.0.0.1:9/v1", "model": "tiny-judge"}],
        timeout_s=1.0, max_retries=1, backoff_s=0.0, failure_threshold=1, reset_after_s=600)
    panel = JudgePanel([TokenF1Judge(), judge])
    res = panel.judge([sample("s1"), sample("s2")])
    assert res.failed_sample_ids == ["s1", "s2"] and res.n_failed == 2
    assert all(f["judge"] == "llm" and "JudgeUnavailable" in f["reason"] for f in res.failures)
    assert res.to_dict()["n_failed"] == 2
    assert res.verdicts["s1"] == {"token_f1": "a"}  # the offline judge still counted
    assert {b["state"] for b in res.breakers.values()} == {"open"}
    with pytest.raises(JudgeUnavailable, match="circuit open"):
        judge.prefer("q", "r", [], "x", "y")


def test_llm_judge_works_when_called_from_inside_an_event_loop(servers) -> None:
    import asyncio

    fast_url, fast_req = servers["fast"]
    judge = LLMJudge.from_endpoints([{"name": "fast", "base_url": fast_url, "model": "m"}],
                                    timeout_s=5)

    async def inside() -> str:
        return judge.prefer("q", "r", [], "signed in 1648", "no idea")

    assert asyncio.run(inside()) == "first" and len(fast_req) == 1


def test_panel_kappa_agrees_with_llmops_stats_on_the_wikipedia_example() -> None:
    """The panel's kappa and llmops.stats' must be the same statistic (Fleiss 1971: 0.210)."""
    from llmops import stats

    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(table) == pytest.approx(stats.fleiss_kappa(table))
