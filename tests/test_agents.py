"""The AutoGen generator/critic team, driven by scripted model clients (no endpoint needed)."""

from __future__ import annotations

import json

from llmops.agents import AutoGenGenerator, make_model_client, parse_pairs
from llmops.dataset import BuildConfig, build_instruction_dataset, filter_examples

PASSAGE = (
    "Under Stage 2, garden sprinklers may only be used between 6 pm and 9 am. Filling a new "
    "swimming pool requires a permit during Stage 2. Permits cost $45."
)
CHUNK = {
    "chunk_id": "c1",
    "doc_id": "faq",
    "ordinal": 0,
    "text": PASSAGE,
    "kind": "text",
    "language": "en",
}


def _team(generator_says: list[str], critic_says: list[str]) -> AutoGenGenerator:
    from autogen_ext.models.replay import ReplayChatCompletionClient

    return AutoGenGenerator(
        lambda: ReplayChatCompletionClient(generator_says),
        critic_client_factory=lambda: ReplayChatCompletionClient(critic_says),
    )


def _draft(*pairs: tuple[str, str]) -> str:
    return json.dumps(
        {"pairs": [{"instruction": q, "response": a, "task": "qa"} for q, a in pairs]}
    )


def test_an_approved_grounded_pair_becomes_an_example():
    team = _team([_draft(("How much does a pool permit cost?", "Permits cost $45."))], ["APPROVE"])
    [example] = team.generate(CHUNK, {})
    assert example.generator == "autogen" and example.response == "Permits cost $45."
    kept, _ = filter_examples([example], BuildConfig())
    assert kept == [example]


def test_a_critic_rejection_yields_nothing_and_is_counted():
    team = _team([_draft(("Is it sunny?", "Yes."))], ["REJECT: not in the passage"])
    assert team.generate(CHUNK, {}) == []
    assert team.stats["rejected"] == 1


def test_a_hallucination_the_critic_approved_is_still_dropped_by_the_filter():
    team = _team(
        [_draft(("How much is a permit?", "Permits cost $450 and take a year."))], ["APPROVE"]
    )
    examples = team.generate(CHUNK, {})
    kept, rejected = filter_examples(examples, BuildConfig())
    assert len(examples) == 1 and kept == [] and rejected == {"ungrounded": 1}


def test_malformed_json_is_counted_not_raised_and_the_batch_goes_on():
    team = _team(["Sure! Here are some pairs: pool permits cost $45."] * 3, ["APPROVE"] * 3)
    build = build_instruction_dataset([CHUNK, {**CHUNK, "chunk_id": "c2"}], {}, team)
    assert build.stats["kept"] == 0 and team.stats["malformed"] == 2


def test_revision_round_uses_the_last_draft():
    team = _team(
        [
            _draft(("Q about sprinklers?", "Sprinklers are banned.")),
            _draft(
                (
                    "When may garden sprinklers be used under Stage 2?",
                    "Under Stage 2, garden sprinklers may only be used between 6 pm and 9 am.",
                )
            ),
        ],
        ["REVISE: the answer is not in the passage", "APPROVE"],
    )
    [example] = team.generate(CHUNK, {})
    assert example.response.startswith("Under Stage 2")


def test_parse_pairs_and_client_factory():
    assert parse_pairs('text {"pairs": [{"instruction": "a", "response": "b"}]} more') == [
        {"instruction": "a", "response": "b"}
    ]
    client = make_model_client("http://127.0.0.1:9/v1", "local-model", api_key="x")
    assert client.model_info["family"] == "unknown"
