"""AutoGen writer/critic team, driven by scripted ReplayChatCompletionClients (no network).

A ReplayChatCompletionClient returns its scripted answers in order, one per ``create`` call.
Shared between both agents it therefore alternates writer, critic, writer...; with one client
per agent each script is that agent's own turns.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient

from llmops.agents import AutoGenGenerator, critic_verdict, make_model_client, parse_pairs
from llmops.dataset import (
    SPLITS,
    BuildConfig,
    build_instruction_dataset,
    filter_examples,
    is_grounded,
)

PASSAGE = (
    "Inspection Findings\n\n"
    "The inspectors visited the Des Moines facility on October 29, 2018. "
    "They found that two of the five pumps lacked maintenance records. "
    "The operator must submit corrected records within 30 days."
)
CHUNK = {
    "chunk_id": "c1",
    "doc_id": "d1",
    "ordinal": 0,
    "text": PASSAGE,
    "kind": "text",
    "heading": "Inspection Findings",
    "page_start": 1,
    "page_end": 1,
    "language": "en",
    "token_count": 40,
}
GROUNDED = {
    "instruction": "When did the inspectors visit the Des Moines facility?",
    "response": "The inspectors visited the Des Moines facility on October 29, 2018.",
    "task": "qa",
}
HALLUCINATED = {
    "instruction": "What fine did the operator receive?",
    "response": "The operator was fined $50,000 for missing records.",
    "task": "qa",
}


def _draft(*pairs: dict) -> str:
    return json.dumps({"pairs": list(pairs)})


def _shared(script: list[str]) -> tuple[AutoGenGenerator, ReplayChatCompletionClient]:
    client = ReplayChatCompletionClient(script)
    return AutoGenGenerator(lambda: client), client


def test_approved_grounded_pair_becomes_an_example():
    gen, client = _shared([_draft(GROUNDED), "APPROVE"])
    [example] = gen.generate(CHUNK, {"DATE": ["October 29, 2018"]})
    assert example.response == GROUNDED["response"]
    assert example.instruction == GROUNDED["instruction"]
    assert (example.task, example.generator, example.doc_id, example.chunk_id) == (
        "qa",
        "autogen",
        "d1",
        "c1",
    )
    assert example.context == PASSAGE
    assert is_grounded(example)
    assert gen.stats["approved"] == 1 and gen.stats["pairs"] == 1
    # The writer saw the passage and the entities in its task.
    first_call = client.create_calls[0]["messages"]
    assert any("October 29, 2018" in str(m.content) for m in first_call)


def test_the_last_draft_before_approve_is_used_after_a_revision():
    revised = {**GROUNDED, "instruction": "On what date was the facility visited?"}
    gen, _ = _shared([_draft(HALLUCINATED), "REVISE: the fine is not in the passage",
                      _draft(revised), "APPROVE - grounded now"])  # fmt: skip
    [example] = gen.generate(CHUNK, {})
    assert example.instruction == revised["instruction"]


def test_separate_clients_per_agent():
    writer = ReplayChatCompletionClient([_draft(GROUNDED)])
    critic = ReplayChatCompletionClient(["APPROVE"])
    gen = AutoGenGenerator(lambda: writer, critic_client_factory=lambda: critic)
    assert len(gen.generate(CHUNK, {})) == 1
    assert len(writer.create_calls) == 1 and len(critic.create_calls) == 1


def test_only_the_critic_ends_the_chat():
    """A draft (or passage) mentioning APPROVE/REJECT is not a verdict."""
    board = {
        "instruction": "Did the inspectors APPROVE or REJECT the records?",
        "response": GROUNDED["response"],
        "task": "qa",
    }
    gen, client = _shared([_draft(board), "REVISE: the answer does not match", _draft(GROUNDED),
                           "APPROVE"])  # fmt: skip
    [example] = gen.generate(CHUNK, {})
    assert example.instruction == GROUNDED["instruction"]
    assert len(client.create_calls) == 4


def test_critic_reject_yields_nothing():
    gen, client = _shared([_draft(GROUNDED), "REJECT: the instruction is ambiguous", "spare"])
    assert gen.generate(CHUNK, {}) == []
    assert gen.stats["rejected"] == 1 and gen.stats["approved"] == 0
    assert len(client.create_calls) == 2  # the chat stopped at the verdict


def test_no_verdict_within_max_turns_yields_nothing():
    script = [_draft(GROUNDED), "REVISE: shorter"] * 5
    gen, client = _shared(script)
    gen.max_turns = 2
    assert gen.generate(CHUNK, {}) == []
    assert gen.stats["no_verdict"] == 1
    assert len(client.create_calls) == 4


def test_malformed_json_is_counted_not_raised():
    gen, _ = _shared(["Here are pairs: {pairs: [oops", "APPROVE"])
    assert gen.generate(CHUNK, {}) == []
    assert gen.stats["malformed"] == 1

    gen, _ = _shared([json.dumps({"pairs": [{"instruction": 1}]}), "APPROVE"])
    assert gen.generate(CHUNK, {}) == []
    assert gen.stats["malformed"] == 1


def test_endpoint_failure_is_counted_not_raised():
    gen, _ = _shared([])  # the script is exhausted on the first call, like a dead endpoint
    assert gen.generate(CHUNK, {}) == []
    assert gen.stats["error"] == 1


def test_hallucinated_pair_approved_by_critic_is_dropped_by_the_filter():
    gen, _ = _shared([_draft(GROUNDED, HALLUCINATED), "APPROVE"])
    examples = gen.generate(CHUNK, {})
    assert len(examples) == 2
    kept, rejected = filter_examples(examples, BuildConfig())
    assert [e.response for e in kept] == [GROUNDED["response"]]
    assert rejected == {"ungrounded": 1}


def test_build_with_the_team_keeps_grounded_pairs_and_reports_team_stats():
    other = {**CHUNK, "chunk_id": "c2", "doc_id": "d2"}
    second = {**GROUNDED, "instruction": "What did the inspectors find about the pumps?"}
    second["response"] = "They found that two of the five pumps lacked maintenance records."
    gen, _ = _shared(
        [_draft(GROUNDED, HALLUCINATED), "APPROVE", _draft(second), "REJECT: too easy"]
    )
    build = build_instruction_dataset([CHUNK, other], {}, gen, BuildConfig())
    rows = [dict(r) for s in SPLITS for r in build.dataset_dict[s]]
    assert [r["response"] for r in rows] == [GROUNDED["response"]]
    assert rows[0]["generator"] == "autogen"
    assert build.stats["rejected"] == {"ungrounded": 1}
    assert build.stats["generator_stats"]["rejected"] == 1


def test_generate_works_inside_a_running_event_loop():
    gen, _ = _shared([_draft(GROUNDED), "APPROVE"])

    async def call() -> int:
        return len(gen.generate(CHUNK, {}))

    assert asyncio.run(call()) == 1


def test_parse_pairs_and_verdict():
    fenced = "Sure:\n```json\n" + _draft({**GROUNDED, "task": "poetry"}) + "\n```"
    assert parse_pairs(fenced) == [{**GROUNDED, "task": "qa"}]
    with pytest.raises(ValueError):
        parse_pairs('{"pairs": []}')
    with pytest.raises(ValueError):
        parse_pairs("no json here")
    assert critic_verdict("APPROVE") == "APPROVE"
    assert critic_verdict("**APPROVE** - nothing to REJECT") == "APPROVE"
    assert critic_verdict("I would not APPROVE this. REJECT: wrong") == "REJECT"
    assert critic_verdict("REJECT: wrong; do not APPROVE") == "REJECT"
    assert critic_verdict("Looks good, APPROVE") == "APPROVE"
    assert critic_verdict("REVISE: shorter") is None


def test_make_model_client_for_a_local_model_name():
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = make_model_client("http://127.0.0.1:9/v1", "qwen2.5-0.5b-instruct")
    assert isinstance(client, OpenAIChatCompletionClient)
    assert client.model_info["function_calling"] is False
    assert client.model_info["family"] == "unknown"
    custom = make_model_client(
        "http://127.0.0.1:9/v1",
        "llama-3",
        model_info={
            "vision": False,
            "function_calling": True,
            "json_output": True,
            "family": "unknown",
            "structured_output": False,
        },
    )
    assert custom.model_info["function_calling"] is True
