"""llmops.rag: the training prompt format, batched == one-by-one greedy output, endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from llmops.rag import Citation, EndpointGenerator, LocalGenerator, build_prompt, retrieve
from llmops.training import format_example
from tests.training_data import shared_tiny_base


def _cit(text: str, cid: str = "c1") -> Citation:
    return Citation(chunk_id=cid, doc_id="d1", doc_name="Doc", page=1, score=1.0, text=text)


def test_prompt_is_the_fine_tuning_format():
    prompt = build_prompt("What fell?", [_cit("Reservoir levels fell."), _cit("Rain was low.")])
    expected, _ = format_example(
        {"instruction": "What fell?", "context": "Reservoir levels fell.\n\nRain was low."}
    )
    assert prompt == expected
    assert prompt.endswith("### Response:\n")


def test_prompt_without_context_and_truncation():
    assert build_prompt("Hi?", []) == format_example({"instruction": "Hi?"})[0]
    prompt = build_prompt("Q?", [_cit("a" * 50), _cit("b" * 50)], max_context_chars=60)
    context = prompt.split("### Context:\n")[1].split("\n\n### Response")[0]
    assert context == "a" * 50 + "\n\n" + "b" * 8  # the weakest chunk is cut first


class _FakeEmbedder:
    def encode(self, texts):
        return np.ones((len(texts), 4), dtype=np.float32)


def test_retrieve_maps_hits_to_citations(tmp_path):
    from llmops.vectorstore import VectorStore

    store = VectorStore(str(tmp_path / "db"), dim=4)
    store.upsert(
        [
            {"chunk_id": "a", "doc_id": "d1", "text": "reservoir levels fell sharply",
             "vector": [1, 0, 0, 0], "page_start": 3},
            {"chunk_id": "b", "doc_id": "d2", "text": "tariffs rise in january",
             "vector": [0, 1, 0, 0]},
        ]
    )
    cits = retrieve(store, _FakeEmbedder(), "reservoir levels", k=2, mode="fts",
                    doc_names={"d1": "Annual report"})
    assert cits[0].chunk_id == "a" and cits[0].doc_name == "Annual report" and cits[0].page == 3
    with pytest.raises(ValueError, match="empty"):
        retrieve(store, _FakeEmbedder(), "  ")


@pytest.fixture(scope="module")
def local_generator(tmp_path_factory) -> LocalGenerator:
    info = shared_tiny_base(tmp_path_factory.getbasetemp())
    return LocalGenerator.from_folder(info.path, name="tiny")


PROMPTS = [
    build_prompt("What fell?", [_cit("Reservoir levels fell to forty two percent.")]),
    build_prompt("Who approved the programme?", [_cit("The board approved a programme.")]),
    build_prompt("Tariff?", []),
    build_prompt("Stage two?", [_cit("In stage two, filling private pools is banned. " * 3)]),
    build_prompt("Samples?", [_cit("The laboratory tested twelve thousand samples.")]),
]


def test_batched_generation_equals_one_by_one(local_generator):
    one = [local_generator.generate([p], max_new_tokens=12, batch_size=1)[0] for p in PROMPTS]
    batched = local_generator.generate(PROMPTS, max_new_tokens=12, batch_size=4)
    assert [g.text for g in batched] == [g.text for g in one]
    assert [g.tokens_out for g in batched] == [g.tokens_out for g in one]
    assert all(g.error is None and g.tokens_in > 0 and 0 < g.tokens_out <= 12 for g in batched)


def test_long_prompts_lose_context_not_their_question(local_generator):
    window = local_generator.max_length
    long = build_prompt("Q?", [_cit("word " * 2000)], max_context_chars=10_000)
    (gen,) = local_generator.generate([long], max_new_tokens=16)
    assert gen.error is None and gen.tokens_in == window - 16
    text = local_generator.tokenizer.decode(local_generator._encode(long, 16),
                                            skip_special_tokens=True)
    assert text.startswith("### Instruction:\nQ?\n\n### Context:\nword word")
    assert text.endswith("\n\n### Response:\n")  # the context is cut at its end
    # a request that cannot fit fails alone; the others in the batch are answered
    short = build_prompt("Hi?", [])
    bad, good = local_generator.generate([long, short], max_new_tokens=window)
    assert "max_new_tokens" in bad.error and good.error is not None  # both too long here
    ok, fine = local_generator.generate([long, short], max_new_tokens=16)
    assert ok.error is None and fine.error is None


# --------------------------------------------------------------------------- endpoint


class _Handler(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def log_message(self, *args) -> None:  # keep test output clean
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.calls.append(body)
        prompt = body["messages"][0]["content"]
        if "FAIL" in prompt:
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "boom"}}')
            return
        payload = {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"echo:{len(prompt)}"}}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 2,
                      "total_tokens": len(prompt.split()) + 2},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def fake_openai() -> Iterator[str]:
    _Handler.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_endpoint_generator_reads_usage_and_reports_failures(fake_openai):
    gen = EndpointGenerator(fake_openai, "fake-model", api_key="k", max_retries=1, timeout_s=5)
    out = gen.generate(["one two three", "please FAIL", "four"], max_new_tokens=7, batch_size=2)
    assert out[0].text == "echo:13" and out[0].tokens_in == 3 and out[0].tokens_out == 2
    assert out[2].text == "echo:4" and out[2].error is None
    assert out[1].text == "" and out[1].error and "500" in out[1].error
    # The failing prompt was retried once (max_retries=1): 2 + 2 calls in total.
    assert sum("FAIL" in c["messages"][0]["content"] for c in _Handler.calls) == 2
    assert all(c["max_tokens"] == 7 and c["temperature"] == 0 for c in _Handler.calls)
