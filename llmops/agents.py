"""An AutoGen team that drafts instruction pairs and a critic that vets them.

Used only when an OpenAI-compatible endpoint is configured; its output goes through the same
`llmops.dataset.filter_examples` as the offline generator, so an approving critic cannot let
an ungrounded pair through. One chunk's bad answer (rejection, malformed JSON, endpoint error)
costs that chunk only and is counted in ``stats``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmops.dataset import InstructionExample

TASKS = {"qa", "summarize", "extract_entities", "table_lookup"}

GENERATOR_PROMPT = """You write training data for a document assistant.
Given a passage, write up to {n} instruction/response pairs whose answers are copied verbatim
from the passage (a sentence, a table cell, or `type: value` entity lines). Answer ONLY with JSON:
{{"pairs": [{{"instruction": "...", "response": "...", "task": "qa"}}]}}
where task is one of qa, summarize, extract_entities, table_lookup.
If the critic asks for changes, answer with the corrected JSON only."""

CRITIC_PROMPT = """You review instruction/response pairs written from a passage.
Reply APPROVE if every response is supported word for word by the passage and every
instruction is clear. Otherwise reply REJECT: <reason>. Reply with one of the two only."""


def make_model_client(base_url: str, model: str, api_key: str | None = None, **kwargs: Any) -> Any:
    """A chat client for any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, TGI...)."""
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    info = kwargs.pop("model_info", None) or {
        "vision": False,
        "function_calling": False,
        "json_output": True,
        "family": "unknown",
        "structured_output": False,
    }
    return OpenAIChatCompletionClient(
        model=model, base_url=base_url, api_key=api_key or "not-needed", model_info=info, **kwargs
    )


def parse_pairs(text: str) -> list[dict[str, str]]:
    """The pairs of the last JSON object in a message; ValueError when there is none."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        raise ValueError("no JSON object in the generator's answer")
    data = json.loads(match.group(0))
    pairs = data.get("pairs") if isinstance(data, dict) else None
    if not isinstance(pairs, list):
        raise ValueError("the JSON has no 'pairs' list")
    return [p for p in pairs if isinstance(p, dict)]


class AutoGenGenerator:
    """PairGenerator backed by a RoundRobinGroupChat of a generator and a critic agent."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        max_pairs: int = 3,
        max_messages: int = 6,
        critic_client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.client_factory = client_factory
        self.critic_client_factory = critic_client_factory or client_factory
        self.max_pairs = max_pairs
        self.max_messages = max_messages
        self.stats: Counter[str] = Counter()

    def generate(
        self, chunk: Mapping[str, Any], entities: Mapping[str, Sequence[str]]
    ) -> list[InstructionExample]:
        try:
            verdict, draft = asyncio.run(self._converse(str(chunk.get("text") or "")))
        except Exception:  # endpoint down, timeout: this chunk only
            self.stats["errors"] += 1
            return []
        if verdict != "APPROVE":
            self.stats["rejected"] += 1
            return []
        try:
            pairs = parse_pairs(draft)
        except (ValueError, json.JSONDecodeError):
            self.stats["malformed"] += 1
            return []
        out = []
        for pair in pairs[: self.max_pairs]:
            task = pair.get("task") if pair.get("task") in TASKS else "qa"
            out.append(
                InstructionExample(
                    instruction=str(pair.get("instruction") or ""),
                    context=str(chunk.get("text") or ""),
                    response=str(pair.get("response") or ""),
                    task=task,
                    doc_id=str(chunk["doc_id"]),
                    chunk_id=str(chunk["chunk_id"]),
                    language=str(chunk.get("language") or "und"),
                    generator="autogen",
                )
            )
        self.stats["approved"] += 1
        return out

    async def _converse(self, passage: str) -> tuple[str, str]:
        """Run the team; returns (APPROVE|REJECT|UNDECIDED, the generator's last draft)."""
        from autogen_agentchat.agents import AssistantAgent
        from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
        from autogen_agentchat.teams import RoundRobinGroupChat

        generator = AssistantAgent(
            "generator",
            model_client=self.client_factory(),
            system_message=GENERATOR_PROMPT.format(n=self.max_pairs),
        )
        critic = AssistantAgent(
            "critic", model_client=self.critic_client_factory(), system_message=CRITIC_PROMPT
        )
        stop = (
            TextMentionTermination("APPROVE", sources=["critic"])
            | TextMentionTermination("REJECT", sources=["critic"])
            | MaxMessageTermination(self.max_messages)
        )
        team = RoundRobinGroupChat([generator, critic], termination_condition=stop)
        result = await team.run(task=f"Passage:\n{passage}")
        draft, verdict = "", "UNDECIDED"
        for message in result.messages:
            content = getattr(message, "content", "")
            if not isinstance(content, str):
                continue
            if message.source == "generator":
                draft = content
            elif message.source == "critic":
                verdict = (
                    "APPROVE"
                    if "APPROVE" in content
                    else "REJECT"
                    if "REJECT" in content
                    else verdict
                )
        return verdict, draft
