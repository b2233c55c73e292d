"""Pairwise answer judges: offline scorers, LLM judges behind a fallback chain, and a panel.

Every judge is asked twice with the answers swapped (``judge_both_orders``): a judge that
changes its mind with the order is position-biased on that sample and counts as a tie. The
panel records every failing (sample, judge) pair instead of dropping it, because the
promotion gate must know how partial its evidence is.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Preference = Literal["first", "second", "tie"]
Verdict = Literal["a", "b", "tie"]

_TOKEN = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(str.split(
    "a an the of to in on at for and or but is are was were be been being it its this that these "
    "those with as by from into than then so such not no do does did has have had i you he she "
    "we they them his her their our your my me us what which who whom when where why how there "
    "here also can could would should will shall may might must"
))


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (unicode-aware, so Arabic text tokenises too)."""
    return _TOKEN.findall(text.lower())


def content_tokens(text: str) -> list[str]:
    """Tokens minus stopwords: what an answer actually claims."""
    return [t for t in tokens(text) if t not in _STOPWORDS]


@dataclass
class JudgeSample:
    """One question with two candidate answers (``a`` is the baseline, ``b`` the candidate).

    ``context`` (a single string) is accepted for callers that hold one joined passage; it is
    appended to ``contexts``.
    """

    sample_id: str
    question: str
    reference: str = ""
    contexts: Sequence[str] = ()
    answer_a: str = ""
    answer_b: str = ""
    context: str = ""

    def __post_init__(self) -> None:
        if not str(self.sample_id):
            raise ValueError("JudgeSample: sample_id is empty")
        if isinstance(self.contexts, str):
            raise ValueError(f"JudgeSample {self.sample_id}: contexts must be a list of strings")
        ctx = [str(c) for c in self.contexts if str(c).strip()]
        if self.context and self.context.strip():
            ctx.append(self.context)
        self.contexts = tuple(ctx)


class Judge(Protocol):
    """Something that prefers one of two answers; it may raise, the panel records it."""

    name: str

    def prefer(self, question: str, reference: str, contexts: Sequence[str],
               first: str, second: str) -> Preference: ...


def judge_both_orders(judge: Judge, sample: JudgeSample) -> Verdict:
    """The judge's verdict with both answer orders; disagreement between orders is a tie."""
    args = (sample.question, sample.reference, sample.contexts)
    ab = judge.prefer(*args, sample.answer_a, sample.answer_b)
    ba = judge.prefer(*args, sample.answer_b, sample.answer_a)
    for value in (ab, ba):
        if value not in ("first", "second", "tie"):
            raise ValueError(f"judge {judge.name}: invalid preference {value!r}")
    first = {"first": "a", "second": "b", "tie": "tie"}[ab]
    swapped = {"first": "b", "second": "a", "tie": "tie"}[ba]
    return first if first == swapped else "tie"  # type: ignore[return-value]


# --------------------------------------------------------------------------- offline judges


class ScoreJudge:
    """Prefers the answer with the higher score, unless the scores are within ``margin``."""

    name = "score"

    def __init__(self, margin: float = 0.02) -> None:
        if margin < 0:
            raise ValueError(f"{self.name}: margin must be >= 0, got {margin}")
        self.margin = margin

    def score(self, question: str, reference: str, contexts: Sequence[str], answer: str) -> float:
        raise NotImplementedError

    def prefer(self, question: str, reference: str, contexts: Sequence[str],
               first: str, second: str) -> Preference:
        s1 = self.score(question, reference, contexts, first)
        s2 = self.score(question, reference, contexts, second)
        if abs(s1 - s2) <= self.margin:
            return "tie"
        return "first" if s1 > s2 else "second"


def token_f1(answer: str, reference: str) -> float:
    """SQuAD-style bag-of-content-tokens F1."""
    pred, ref = content_tokens(answer), content_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


class TokenF1Judge(ScoreJudge):
    """Lexical overlap with the reference answer: rewards the right facts, ignores order."""

    name = "token_f1"

    def score(self, question: str, reference: str, contexts: Sequence[str], answer: str) -> float:
        if not reference.strip():
            raise ValueError(f"{self.name}: the sample has no reference answer")
        return token_f1(answer, reference)


class GroundingJudge(ScoreJudge):
    """Share of the answer's content tokens found in the retrieved contexts.

    Unsupported tokens are penalised (``penalty`` per token, relative to the answer length),
    so padding a grounded answer with invented text lowers its score. Without contexts the
    reference is the only evidence available and is used instead.
    """

    name = "grounding"

    def __init__(self, margin: float = 0.02, penalty: float = 0.5) -> None:
        super().__init__(margin)
        self.penalty = penalty

    def score(self, question: str, reference: str, contexts: Sequence[str], answer: str) -> float:
        evidence = " ".join(contexts) if contexts else reference
        if not evidence.strip():
            raise ValueError(f"{self.name}: the sample has neither contexts nor a reference")
        claimed = content_tokens(answer)
        if not claimed:
            return -1.0  # an empty answer claims nothing and answers nothing
        support = set(content_tokens(evidence))
        supported = sum(t in support for t in claimed)
        unsupported = len(claimed) - supported
        return (supported - self.penalty * unsupported) / len(claimed)


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure over word tokens (longest common subsequence)."""
    from rapidfuzz.distance import LCSseq

    a, r = tokens(answer), tokens(reference)
    if not a or not r:
        return float(a == r)
    lcs = LCSseq.similarity(a, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(a), lcs / len(r)
    return 2 * p * rec / (p + rec)


class RougeJudge(ScoreJudge):
    """Sequence similarity to the reference: mean of word ROUGE-L and character similarity.

    Unlike token F1 it is order-sensitive and the character part credits near-miss spellings
    and inflections.
    """

    name = "rouge_l_char"

    def score(self, question: str, reference: str, contexts: Sequence[str], answer: str) -> float:
        from rapidfuzz import fuzz

        if not reference.strip():
            raise ValueError(f"{self.name}: the sample has no reference answer")
        char = fuzz.ratio(answer.lower(), reference.lower()) / 100.0
        return 0.5 * rouge_l(answer, reference) + 0.5 * char


# --------------------------------------------------------------------------- LLM judges


class JudgeUnavailable(RuntimeError):
    """Every endpoint of a chain failed (or had its breaker open) for one call."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("all judge endpoints failed: " + "; ".join(errors))
        self.errors = errors


class CircuitBreaker:
    """Stops calling an endpoint after ``failure_threshold`` consecutive failures.

    After ``reset_after_s`` the breaker is half-open: one trial call is let through; its
    success closes the breaker, its failure opens it again for another period.
    """

    def __init__(self, failure_threshold: int = 3, reset_after_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_after_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        return self.state != "open"

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        half_open = self.state == "half_open"
        self.failures += 1
        if half_open or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "failures": self.failures,
                "failure_threshold": self.failure_threshold,
                "reset_after_s": self.reset_after_s}


@dataclass(frozen=True)
class JudgeEndpoint:
    """An OpenAI-compatible chat endpoint used as a judge."""

    name: str
    base_url: str
    model: str
    api_key: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JudgeEndpoint:
        """From ``{name, base_url, model, api_key}``; ``api_key_env`` names a variable instead.

        Other keys (``timeout_s``, ``max_retries`` of the evaluation resource) are ignored here;
        ``LLMJudge.from_endpoints`` turns them into the chain's settings.
        """
        missing = [k for k in ("name", "base_url", "model") if not raw.get(k)]
        if missing:
            raise ValueError(f"judge endpoint {raw.get('name', dict(raw))!r}: missing {missing}")
        key = raw.get("api_key")
        env = raw.get("api_key_env")
        if not key and env:
            key = os.environ.get(str(env))
            if not key:
                raise ValueError(f"judge endpoint {raw['name']!r}: environment variable "
                                 f"{env} is not set")
        return cls(str(raw["name"]), str(raw["base_url"]), str(raw["model"]), key)


JUDGE_SYSTEM = (
    "You compare two answers to a question. Judge factual correctness against the reference "
    "and support by the context; ignore length and style. Reply with exactly one word: "
    "FIRST, SECOND or TIE."
)


_GRACE_S = 10.0


def autogen_call(endpoint: JudgeEndpoint, system: str, prompt: str, timeout_s: float) -> str:
    """One AutoGen AssistantAgent turn against ``endpoint``; fresh agent, no memory.

    ``timeout_s`` is the HTTP client's timeout (connect/read), so it measures the endpoint and
    not this process's one-off lazy initialisation on the first call; the outer asyncio bound
    (``timeout_s`` plus a grace period) only guards against a hang outside the HTTP call.
    """
    from autogen_agentchat.agents import AssistantAgent

    from llmops.agents import make_model_client

    async def run() -> str:
        client = make_model_client(endpoint.base_url, endpoint.model, endpoint.api_key,
                                   timeout=timeout_s, max_retries=0)
        try:
            agent = AssistantAgent("judge", model_client=client, system_message=system)
            result = await asyncio.wait_for(agent.run(task=prompt),
                                          timeout=timeout_s + _GRACE_S)
            content = result.messages[-1].content
            if not isinstance(content, str):
                raise ValueError(f"non-text reply {type(content).__name__}")
            return content
        finally:
            await client.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    # Called from inside an event loop (notebook, async server): run on a worker thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()


class EndpointChain:
    """Ordered fallback over endpoints with timeout, retries with backoff, per-endpoint breaker."""

    def __init__(self, endpoints: Iterable[JudgeEndpoint | Mapping[str, Any]], *,
                 timeout_s: float = 30.0, max_retries: int = 1, backoff_s: float = 0.5,
                 failure_threshold: int = 3, reset_after_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 call: Callable[[JudgeEndpoint, str, str, float], str] = autogen_call) -> None:
        self.endpoints = [e if isinstance(e, JudgeEndpoint) else JudgeEndpoint.from_dict(e)
                          for e in endpoints]
        if not self.endpoints:
            raise ValueError("EndpointChain: no endpoints")
        names = [e.name for e in self.endpoints]
        if len(set(names)) != len(names):
            raise ValueError(f"EndpointChain: duplicate endpoint names {names}")
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.sleep, self.call = sleep, call
        self.breakers = {e.name: CircuitBreaker(failure_threshold, reset_after_s, clock)
                         for e in self.endpoints}
        self.last_endpoint: str | None = None
        self.last_errors: list[str] = []  # what failed before the last successful endpoint

    def complete(self, system: str, prompt: str,
                 parse: Callable[[str], Any] = lambda text: text) -> Any:
        """The first endpoint's parsed reply; a reply ``parse`` rejects counts as a failure."""
        errors: list[str] = []
        for ep in self.endpoints:
            breaker = self.breakers[ep.name]
            for attempt in range(self.max_retries + 1):
                if not breaker.allow():
                    errors.append(f"{ep.name}: circuit open")
                    break
                try:
                    value = parse(self.call(ep, system, prompt, self.timeout_s))
                except Exception as exc:  # any endpoint error: fall back
                    breaker.record_failure()
                    timed_out = isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__
                    reason = f"timeout after {self.timeout_s}s" if timed_out else repr(exc)[:200]
                    errors.append(f"{ep.name} attempt {attempt + 1}: {reason}")
                    if attempt < self.max_retries and breaker.allow():
                        self.sleep(self.backoff_s * 2**attempt)
                    continue
                breaker.record_success()
                self.last_endpoint, self.last_errors = ep.name, errors
                return value
        self.last_endpoint, self.last_errors = None, errors
        raise JudgeUnavailable(errors)

    def breaker_states(self) -> dict[str, dict[str, Any]]:
        return {name: b.to_dict() for name, b in self.breakers.items()}


_VERDICT = re.compile(r"^\W*(?:verdict\s*:\s*)?(first|second|tie)\W*$", re.IGNORECASE)


def parse_preference(text: str) -> Preference:
    """Strict: the reply must be exactly FIRST, SECOND or TIE (optionally ``VERDICT: ``)."""
    m = _VERDICT.match(text.strip())
    if not m:
        raise ValueError(f"unparseable judge verdict {text.strip()[:80]!r}")
    return m.group(1).lower()  # type: ignore[return-value]


class LLMJudge:
    """An LLM that picks the better of two answers, through an ``EndpointChain``."""

    def __init__(self, chain: EndpointChain, name: str = "llm", max_context_chars: int = 2000,
                 system: str = JUDGE_SYSTEM) -> None:
        self.chain, self.name = chain, name
        self.max_context_chars, self.system = max_context_chars, system

    @classmethod
    def from_endpoints(cls, endpoints: Iterable[Mapping[str, Any]], name: str = "llm",
                       **chain_kw: Any) -> LLMJudge:
        """A judge over endpoint dicts; per-endpoint ``timeout_s``/``max_retries`` (as in the
        evaluation resource's judge config) set the chain's, the largest value winning, unless
        passed explicitly."""
        endpoints = [dict(e) for e in endpoints]
        for key in ("timeout_s", "max_retries"):
            values = [e[key] for e in endpoints if e.get(key) is not None]
            if values and key not in chain_kw:
                chain_kw[key] = max(values)
        return cls(EndpointChain(endpoints, **chain_kw), name=name)

    def prompt(self, question: str, reference: str, contexts: Sequence[str],
               first: str, second: str) -> str:
        ctx = "\n---\n".join(contexts)[: self.max_context_chars]
        return (f"Question:\n{question}\n\nReference answer:\n{reference or '(none)'}\n\n"
                f"Context:\n{ctx or '(none)'}\n\nFIRST answer:\n{first}\n\n"
                f"SECOND answer:\n{second}\n\nWhich answer is better? "
                "Reply FIRST, SECOND or TIE.")

    def prefer(self, question: str, reference: str, contexts: Sequence[str],
               first: str, second: str) -> Preference:
        return self.chain.complete(
            self.system, self.prompt(question, reference, contexts, first, second),
            parse=parse_preference)

    def breaker_states(self) -> dict[str, dict[str, Any]]:
        return self.chain.breaker_states()


# --------------------------------------------------------------------------- panel


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of a subjects x categories count table (same rater count per row).

    None when undefined (no subjects, fewer than two raters); 1.0 when every rater always
    chose the same single category.
    """
    if not table:
        return None
    n = sum(table[0])
    if n < 2 or any(sum(row) != n for row in table):
        return None
    big_n = len(table)
    p_bar = sum((sum(c * c for c in row) - n) / (n * (n - 1)) for row in table) / big_n
    totals = [sum(row[j] for row in table) for j in range(len(table[0]))]
    p_e = sum((t / (big_n * n)) ** 2 for t in totals)
    if math.isclose(p_e, 1.0):
        return 1.0
    return (p_bar - p_e) / (1 - p_e)


def majority(verdicts: Iterable[str]) -> Verdict:
    """Strict majority of the verdicts, otherwise a tie."""
    counts = Counter(verdicts)
    total = sum(counts.values())
    for v in ("a", "b"):
        if total and counts[v] * 2 > total:
            return v  # type: ignore[return-value]
    return "tie"


_CATEGORIES = ("a", "b", "tie")


@dataclass
class PanelResult:
    """Per-sample verdicts, consensus, totals, agreement and every recorded failure."""

    judges: list[str]
    verdicts: dict[str, dict[str, str]]  # sample_id -> judge -> a|b|tie
    sample_consensus: dict[str, str]  # sample_id -> a|b|tie (samples with >= 1 verdict)
    failures: list[dict[str, str]]  # {sample_id, judge, reason}
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: tuple[str, str] = ("champion", "challenger")

    @property
    def a_wins(self) -> int:
        return sum(v == "a" for v in self.sample_consensus.values())

    @property
    def b_wins(self) -> int:
        return sum(v == "b" for v in self.sample_consensus.values())

    @property
    def ties(self) -> int:
        return sum(v == "tie" for v in self.sample_consensus.values())

    @property
    def consensus(self) -> Verdict:
        if self.a_wins > self.b_wins:
            return "a"
        return "b" if self.b_wins > self.a_wins else "tie"

    @property
    def verdict(self) -> str:
        """The consensus in the caller's labels (``a`` -> labels[0], ``b`` -> labels[1])."""
        return {"a": self.labels[0], "b": self.labels[1], "tie": "tie"}[self.consensus]

    @property
    def sign_test_p(self) -> float | None:
        """Two-sided exact sign test of a-wins vs b-wins (ties dropped): is the lead chance?"""
        n, k = self.a_wins + self.b_wins, min(self.a_wins, self.b_wins)
        if n == 0:
            return None
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)

    @property
    def failed_sample_ids(self) -> list[str]:
        return sorted({f["sample_id"] for f in self.failures})

    @property
    def n_failed(self) -> int:
        return len(self.failed_sample_ids)

    @property
    def n_judged(self) -> int:
        return len(self.sample_consensus)

    @property
    def agreement(self) -> float | None:
        """Fleiss' kappa over the samples every judge gave a verdict on."""
        table = [[Counter(v.values())[c] for c in _CATEGORIES]
                 for v in self.verdicts.values() if len(v) == len(self.judges)]
        return fleiss_kappa(table)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "consensus": self.consensus,
            "labels": {"a": self.labels[0], "b": self.labels[1]},
            "agreement": self.agreement, "n_judged": self.n_judged, "n_failed": self.n_failed,
            "a_wins": self.a_wins, "b_wins": self.b_wins, "ties": self.ties,
            "sign_test_p": self.sign_test_p, "judges": list(self.judges),
            "samples": [{"sample_id": sid, "verdicts": dict(self.verdicts.get(sid, {})),
                         "consensus": self.sample_consensus.get(sid)}
                        for sid in self.verdicts],
            "failed_sample_ids": self.failed_sample_ids,
            "failures": [dict(f) for f in self.failures],
            "breakers": self.breakers,
        }

    def to_frame(self) -> Any:
        """One row per sample: a column per judge, the consensus and the failure reasons."""
        import pandas as pd

        rows = []
        for sid, verdicts in self.verdicts.items():
            errors = [f"{f['judge']}: {f['reason']}" for f in self.failures
                      if f["sample_id"] == sid]
            rows.append({"sample_id": sid, **{j: verdicts.get(j) for j in self.judges},
                         "consensus": self.sample_consensus.get(sid),
                         "errors": "; ".join(errors) or None})
        return pd.DataFrame(rows, columns=["sample_id", *self.judges, "consensus", "errors"])


class JudgePanel:
    """Several judges over the same samples, each judged in both answer orders."""

    def __init__(self, judges: Sequence[Judge],
                 labels: tuple[str, str] = ("champion", "challenger")) -> None:
        if not judges:
            raise ValueError("JudgePanel: no judges")
        names = [j.name for j in judges]
        if len(set(names)) != len(names):
            raise ValueError(f"JudgePanel: duplicate judge names {names}")
        self.judges, self.labels = list(judges), labels

    @classmethod
    def default(cls, endpoints: Iterable[Mapping[str, Any]] = (), margin: float = 0.02,
                labels: tuple[str, str] = ("champion", "challenger"),
                **chain_kw: Any) -> JudgePanel:
        """The three offline judges, plus one LLM judge when endpoints are given."""
        judges: list[Judge] = [TokenF1Judge(margin), GroundingJudge(margin), RougeJudge(margin)]
        endpoints = list(endpoints)
        if endpoints:
            judges.append(LLMJudge.from_endpoints(endpoints, **chain_kw))
        return cls(judges, labels=labels)

    def run(self, samples: Iterable[JudgeSample]) -> PanelResult:
        verdicts: dict[str, dict[str, str]] = {}
        consensus: dict[str, str] = {}
        failures: list[dict[str, str]] = []
        for sample in samples:
            if sample.sample_id in verdicts:  # keep the first, report the clash
                failures.append({"sample_id": sample.sample_id, "judge": "*",
                                 "reason": "duplicate sample_id: this copy was not judged"})
                continue
            per: dict[str, str] = {}
            for judge in self.judges:
                try:
                    per[judge.name] = judge_both_orders(judge, sample)
                except Exception as exc:  # recorded, never dropped
                    failures.append({"sample_id": sample.sample_id, "judge": judge.name,
                                     "reason": f"{type(exc).__name__}: {exc}"[:500]})
            verdicts[sample.sample_id] = per
            if per:
                consensus[sample.sample_id] = majority(per.values())
        breakers: dict[str, dict[str, Any]] = {}
        for judge in self.judges:
            states = getattr(judge, "breaker_states", None)
            if callable(states):
                breakers.update({f"{judge.name}/{k}": v for k, v in states().items()})
        return PanelResult([j.name for j in self.judges], verdicts, consensus, failures,
                           breakers, self.labels)

    judge = run  # the name assets/comparison.py calls
