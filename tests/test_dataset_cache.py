"""The AutoGen dataset path asks the model once per chunk, prompt, model and temperature.

A counting scripted client stands in for the endpoint (no network): a second build of the same
corpus makes no call and gives the same dataset version; a changed chunk, model or temperature
is asked again; a failed conversation is not cached.
"""

from __future__ import annotations

import json
from pathlib import Path

from autogen_ext.models.replay import ReplayChatCompletionClient as Replay

from llmops.agents import AutoGenGenerator, PairCache
from llmops.dataset import BuildConfig, build_instruction_dataset


def _chunk(i: int, text: str | None = None) -> dict:
    text = text or (f"Section {i}\n\nThe reservoir at site {i} held {40 + i} percent of its "
                    f"capacity on March {i + 1}, 2024. Inspectors visited site {i} twice.")
    return {"chunk_id": f"c{i}", "doc_id": f"d{i}", "ordinal": 0, "text": text, "kind": "text",
            "heading": f"Section {i}", "page_start": 1, "page_end": 1, "language": "en",
            "token_count": 30}


class CountingTeam(AutoGenGenerator):
    """Scripted writer and critic (ReplayChatCompletionClient) that count conversations: the
    writer quotes the first sentence of the passage it is asked about, the critic approves."""

    def __init__(self, model_key: str, cache: PairCache, fail: bool = False) -> None:
        super().__init__(self._writer, critic_client_factory=lambda: Replay(["APPROVE"]),
                         cache=cache, model_key=model_key)
        self.calls, self.fail, self.task = 0, fail, ""

    def _ask(self, task: str):
        self.calls += 1
        self.task = task
        return super()._ask(task)

    def _writer(self) -> Replay:
        if self.fail:
            raise ConnectionError("endpoint down")
        passage = self.task.split("Passage:\n", 1)[1].split("\n\n", 1)[-1]
        first = passage.split(". ")[0].rstrip(".") + "."
        return Replay([json.dumps({"pairs": [{
            "instruction": "What does the passage report first?", "response": first,
            "task": "qa"}]})])


def _build(rows: list[dict], cache: PairCache, model: str = "m@0.0"):
    gen = CountingTeam(model, cache)
    return build_instruction_dataset(rows, {}, gen, BuildConfig(split=(0.6, 0.2, 0.2))), gen


def test_second_build_makes_no_call_and_gives_the_same_version(tmp_path: Path) -> None:
    cache = PairCache(tmp_path / "pairs.sqlite")
    rows = [_chunk(i) for i in range(6)]
    first, gen1 = _build(rows, cache)
    assert gen1.calls == 6 and gen1.stats["cache_miss"] == 6 and len(cache) == 6
    assert gen1.stats["approved"] == 6 and len(first.dataset_dict["train"]) > 0
    second, gen2 = _build(rows, PairCache(tmp_path / "pairs.sqlite"))  # a later build
    assert gen2.calls == 0 and gen2.stats["cache_hit"] == 6
    assert second.version == first.version

    # one chunk changed: only that chunk is asked again
    changed = [*rows[:5], _chunk(5, "Section 5\n\nThe tariff rose by 3 percent in 2025.")]
    third, gen3 = _build(changed, cache)
    assert gen3.calls == 1 and gen3.stats["cache_hit"] == 5
    assert third.version != first.version

    # another model or temperature is another question
    _, gen4 = _build(rows, cache, model="m@0.7")
    assert gen4.calls == 6 and gen4.stats["cache_miss"] == 6


def test_failed_conversations_are_not_cached(tmp_path: Path) -> None:
    cache = PairCache(tmp_path / "pairs.sqlite")
    rows = [_chunk(i) for i in range(3)]
    down = CountingTeam("m", cache, fail=True)
    assert all(down.generate(row, {}) == [] for row in rows)
    assert down.stats["error"] == 3 and len(cache) == 0
    _, ok = _build(rows, cache, model="m")
    assert ok.calls == 3 and ok.stats["cache_miss"] == 3 and len(cache) == 3  # retried
