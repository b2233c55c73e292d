"""An AutoGen team that drafts instruction pairs for a chunk and a critic that vets them.

Used only when an OpenAI-compatible endpoint is configured. The critic improves the drafts but
is not trusted: its output goes through :func:`llmops.dataset.filter_examples` like the
offline generator's, so an approved but hallucinated pair is still dropped. A chunk whose
conversation ends in REJECT, without a verdict, with malformed JSON or with an endpoint error
yields no examples and is counted in ``stats``; it never fails the batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmops.dataset import TASKS, InstructionExample

GENERATOR_NAME = "pair_writer"
CRITIC_NAME = "critic"

GENERATOR_PROMPT = """You write training data for a document assistant.
Given a passage, write up to {n} instruction/response pairs. Every response must be copied
verbatim from the passage: a whole sentence (task "qa"), a few whole sentences ("summarize"),
a table cell ("table_lookup") or lines "TYPE: value" with values from the passage
("extract_entities"). Write instructions in the passage's language.
Answer ONLY with JSON: {{"pairs": [{{"instruction": "...", "response": "...", "task": "qa"}}]}}
When the critic asks for changes, answer with the corrected JSON only."""

CRITIC_PROMPT = """You review instruction/response pairs written from a passage.
Reply "APPROVE" when every response is supported word for word by the passage and every
instruction is clear and answerable from the passage alone.
Reply "REJECT: <reason>" when the pairs cannot be fixed.
Otherwise reply "REVISE: <what to change>"."""

_JSON_BLOCK = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def make_model_client(base_url: str, model: str, api_key: str | None = None, **kw: Any) -> Any:
    """An OpenAI-compatible chat client (vLLM, Ollama, TGI, LM Studio, OpenAI itself).

    autogen refuses model names it does not know unless told their capabilities, so a
    conservative ``model_info`` (text only, no tools) is supplied unless the caller passes one.
    Local servers ignore the API key but the client requires a non-empty one.
    """
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    model_info = kw.pop("model_info", None)
    if model_info is None and not model.startswith(("gpt-", "o1", "o3", "o4")):
        model_info = {
            "vision": False,
            "function_calling": False,
            "json_output": False,
            "family": "unknown",
            "structured_output": False,
        }
    if model_info is not None:
        kw["model_info"] = model_info
    return OpenAIChatCompletionClient(
        model=model, base_url=base_url, api_key=api_key or "not-needed", **kw
    )


def parse_pairs(text: str) -> list[dict[str, str]]:
    """The ``pairs`` of the generator's JSON answer (bare or in a ```json fence).

    Raises ValueError when there is no JSON object with a ``pairs`` list of objects that
    each have a string instruction and response: the caller counts that as malformed.
    """
    fenced = _JSON_BLOCK.search(text)
    candidate = fenced.group(1) if fenced else text[text.find("{") : text.rfind("}") + 1]
    if not candidate:
        raise ValueError("no JSON object in the answer")
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    pairs = data.get("pairs") if isinstance(data, dict) else None
    if not isinstance(pairs, list) or not pairs:
        raise ValueError("the JSON has no non-empty 'pairs' list")
    out = []
    for pair in pairs:
        if not isinstance(pair, dict) or not all(
            isinstance(pair.get(k), str) for k in ("instruction", "response")
        ):
            raise ValueError(f"pair is not an object with string instruction/response: {pair!r}")
        task = pair.get("task")
        out.append(
            {
                "instruction": pair["instruction"],
                "response": pair["response"],
                "task": task if isinstance(task, str) and task in TASKS else "qa",
            }
        )
    return out


def critic_verdict(text: str) -> str | None:
    """APPROVE / REJECT from a critic message, else None (e.g. "REVISE: ...").

    A message that opens with a keyword means that keyword. Otherwise any REJECT wins over
    APPROVE: "I cannot APPROVE this, REJECT" must not pass, and a wrongly rejected chunk
    only costs a few pairs while a wrongly approved one is left to the filter alone.
    """
    opening = text.lstrip(" \t\n*#>`\"'")
    for word in ("APPROVE", "REJECT"):
        if opening.startswith(word):
            return word
    if "REJECT" in text:
        return "REJECT"
    return "APPROVE" if "APPROVE" in text else None


def _run(coro: Any) -> Any:
    """asyncio.run, also from inside a running loop (a notebook, an async Dagster op)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class PairCache:
    """Generated pairs by (chunk, prompts, model, temperature) in a SQLite file.

    An unchanged chunk asked of the same model with the same prompts is never sent again: the
    dataset build is reproducible (same pairs, same dataset version) and costs nothing the
    second time. Outcomes (approved pairs, a rejection, no verdict, malformed drafts) are kept;
    errors (endpoint down, timeouts) are not, so they are retried. One row per key, written in a
    transaction: a killed build leaves whole rows only.
    """

    def __init__(self, path: str | Path) -> None:
        import sqlite3

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS pairs (key TEXT PRIMARY KEY, "
                             "outcome TEXT NOT NULL, pairs TEXT NOT NULL, created TEXT NOT NULL)")

    def get(self, key: str) -> tuple[str, list[dict[str, str]]] | None:
        row = self._db.execute("SELECT outcome, pairs FROM pairs WHERE key = ?", (key,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def put(self, key: str, outcome: str, pairs: list[dict[str, str]]) -> None:
        from datetime import UTC, datetime

        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?)",
                (key, outcome, json.dumps(pairs, ensure_ascii=False),
                 datetime.now(UTC).isoformat(timespec="seconds")),
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0])


class AutoGenGenerator:
    """PairGenerator backed by a RoundRobinGroupChat of a pair writer and a critic.

    ``client_factory`` is called once per agent per chunk (the critic may use its own
    ``critic_client_factory``, e.g. a different model) and the clients are closed after the
    chat, so a factory should return a new client (a scripted test client may be shared: its
    ``close`` is a no-op and its script then alternates writer/critic). ``max_turns`` bounds
    writer/critic rounds: a conversation without a verdict after that many yields nothing.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        max_turns: int = 4,
        max_pairs: int = 4,
        critic_client_factory: Callable[[], Any] | None = None,
        cache: PairCache | None = None,
        model_key: str = "",
    ) -> None:
        self.client_factory = client_factory
        self.critic_client_factory = critic_client_factory or client_factory
        self.max_turns = max_turns
        self.max_pairs = max_pairs
        self.cache = cache
        self.model_key = model_key  # model(s) and sampling settings: part of the cache key
        self.stats: Counter[str] = Counter()

    def cache_key(self, task: str) -> str:
        """The chunk's task text (passage, entities, section, language), both prompts, the
        conversation limits and the model settings."""
        parts = [task, GENERATOR_PROMPT, CRITIC_PROMPT, str(self.max_pairs), str(self.max_turns),
                 self.model_key]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def generate(
        self, chunk: Mapping[str, Any], entities: Mapping[str, Sequence[str]]
    ) -> list[InstructionExample]:
        text = str(chunk.get("text") or "")
        self.stats["chunks"] += 1
        if not text.strip():
            self.stats["empty_chunk"] += 1
            return []
        task = self._task(chunk, entities)
        key = self.cache_key(task)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            self.stats["cache_hit"] += 1
            outcome, pairs = cached
        else:
            outcome, pairs = self._ask(task)
            if outcome == "error":  # not cached: retried on the next build
                return []
            self.stats["cache_miss" if self.cache is not None else "generated"] += 1
            if self.cache is not None:
                self.cache.put(key, outcome, pairs)
        if outcome != "approved":
            self.stats[outcome] += 1
            return []
        self.stats["approved"] += 1
        examples = [
            InstructionExample(
                instruction=p["instruction"].strip(),
                context=text,
                response=p["response"].strip(),
                task=p["task"],
                doc_id=str(chunk.get("doc_id") or ""),
                chunk_id=str(chunk.get("chunk_id") or ""),
                language=str(chunk.get("language") or "en"),
                generator="autogen",
            )
            for p in pairs[: self.max_pairs]
        ]
        self.stats["pairs"] += len(examples)
        return examples

    def _ask(self, task: str) -> tuple[str, list[dict[str, str]]]:
        """One writer/critic conversation: (outcome, approved pairs)."""
        try:
            verdict, draft = _run(self._converse(task))
        except Exception:  # endpoint down, timeout, exhausted script: this chunk only
            self.stats["error"] += 1
            return "error", []
        if verdict != "APPROVE":
            return ("rejected" if verdict == "REJECT" else "no_verdict"), []
        try:
            return "approved", parse_pairs(draft or "")
        except ValueError:
            return "malformed", []

    def _task(self, chunk: Mapping[str, Any], entities: Mapping[str, Sequence[str]]) -> str:
        found = {k: list(v) for k, v in entities.items() if v}
        parts = [
            f"Write up to {self.max_pairs} pairs.",
            f"Language: {chunk.get('language') or 'en'}. Kind: {chunk.get('kind') or 'text'}.",
        ]
        if chunk.get("heading"):
            parts.append(f"Section: {chunk['heading']}")
        if found:
            parts.append(f"Entities found in the passage: {json.dumps(found, ensure_ascii=False)}")
        parts.append(f"Passage:\n{chunk.get('text')}")
        return "\n".join(parts)

    async def _converse(self, task: str) -> tuple[str | None, str | None]:
        """Run the team; (verdict, the writer's last draft before the verdict)."""
        from autogen_agentchat.agents import AssistantAgent
        from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
        from autogen_agentchat.teams import RoundRobinGroupChat

        writer_client = self.client_factory()
        critic_client = self.critic_client_factory()
        try:
            writer = AssistantAgent(
                GENERATOR_NAME,
                model_client=writer_client,
                system_message=GENERATOR_PROMPT.format(n=self.max_pairs),
            )
            critic = AssistantAgent(
                CRITIC_NAME, model_client=critic_client, system_message=CRITIC_PROMPT
            )
            # Only the critic's words end the chat: the passage or a draft may contain them.
            stop = (
                TextMentionTermination("APPROVE", sources=[CRITIC_NAME])
                | TextMentionTermination("REJECT", sources=[CRITIC_NAME])
                | MaxMessageTermination(1 + 2 * self.max_turns)
            )
            team = RoundRobinGroupChat([writer, critic], termination_condition=stop)
            result = await team.run(task=task)
        finally:
            for client in {
                id(writer_client): writer_client,
                id(critic_client): critic_client,
            }.values():
                close = getattr(client, "close", None)
                if close is not None:
                    await close()

        verdict: str | None = None
        draft: str | None = None
        for message in result.messages:
            content = getattr(message, "content", None)
            if not isinstance(content, str):
                continue
            if message.source == GENERATOR_NAME:
                draft = content
            elif message.source == CRITIC_NAME:
                verdict = critic_verdict(content)
                if verdict:
                    break
        return verdict, draft
