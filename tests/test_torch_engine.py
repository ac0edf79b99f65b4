"Tests for dspyopt_nb.engines.torch_engine: micro-batching on a tiny random model (CPU), and the real GGUF through transformers."
import threading, time, uuid
from concurrent.futures import ThreadPoolExecutor

import dspy
import pytest
import torch
from dspy.lm15 import Config, ContextLengthError, Message, Request

import dspyopt_nb.engines.torch_engine as te
from dspyopt_nb.engines.lm import is_base_model, lm
from dspyopt_nb.engines.base import ModelFileError
from dspyopt_nb.engines.torch_engine import DEFAULT_MAX_BATCH, GenerationError, TorchEngine, load_causal_lm, tiny_model

# prompts of different lengths, so a batch needs left padding
PROMPTS = ["Review: a gorgeous film .\nSentiment:", "Review: dull .\nSentiment:",
           "Review: witty , seductive and charming , a journey that never finds its footing .\nSentiment:",
           "Review: bleak\nSentiment:", "Question: what is two plus two ?\nAnswer:", "The quick brown fox",
           "Review: lifeless and desperate , often affecting .\nSentiment:", "Question: which colour is the sky ?\nAnswer:"]


def ask(text, **config) -> Request:
    return Request(model="tiny", messages=(Message.user(text),), config=Config(**config))


def concurrently(engine, requests) -> list:
    "Send all requests at the same moment from one thread each; the responses, in order."
    start = threading.Barrier(len(requests))
    def call(r):
        start.wait()
        return engine.complete(r)
    with ThreadPoolExecutor(len(requests)) as ex: return list(ex.map(call, requests))


def summary(r) -> tuple:
    return r.message.text, r.usage.input_tokens, r.usage.output_tokens, r.finish_reason


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture
def engine(tiny):
    e = TorchEngine(tiny[0], tokenizer=tiny[1], batch_wait_ms=50)
    yield e
    e.close()


@pytest.fixture
def alone(tiny):
    "The same model, one request per generate call: the reference batching must not change."
    e = TorchEngine(tiny[0], tokenizer=tiny[1], max_batch_size=1)
    yield e
    e.close()


# ---------------------------------------------------------------- batching

def test_concurrent_requests_share_generate_calls_and_answer_as_alone(engine, alone):
    batched = concurrently(engine, [ask(p, max_tokens=8) for p in PROMPTS])
    assert sum(engine.batch_sizes) == 8 and len(engine.batch_sizes) < 8 and max(engine.batch_sizes) > 1
    singles = [alone.complete(ask(p, max_tokens=8)) for p in PROMPTS]
    assert set(alone.batch_sizes) == {1}
    assert [summary(r) for r in batched] == [summary(r) for r in singles]
    assert all(r.message.text for r in batched)


def test_each_row_keeps_its_own_max_tokens_and_stop_sequences(engine, alone):
    full = [alone.complete(ask(p, max_tokens=10)).message.text for p in PROMPTS]
    # half the requests stop at two words from the middle of their own answer, the others at their own max_tokens
    reqs = [ask(p, max_tokens=10, stop=(" ".join(f.split()[3:5]),)) if i % 2 else ask(p, max_tokens=2 + i)
            for i, (p, f) in enumerate(zip(PROMPTS, full))]
    batched = concurrently(engine, reqs)
    assert max(engine.batch_sizes) > 1
    assert [summary(r) for r in batched] == [summary(alone.complete(r)) for r in reqs]
    for i, (r, f) in enumerate(zip(batched, full)):
        if i % 2:
            stop = " ".join(f.split()[3:5])
            assert r.message.text == f[: f.index(stop)] and r.finish_reason == "stop"
            assert r.usage.output_tokens < 10  # counted up to the stop, not to the batch's longest row
        else:
            assert r.usage.output_tokens == 2 + i and r.finish_reason == "length"


def test_usage_counts_real_tokens_without_padding(engine, tiny):
    batched = concurrently(engine, [ask(p, max_tokens=4) for p in PROMPTS])
    assert max(engine.batch_sizes) > 1
    assert [r.usage.input_tokens for r in batched] == [len(tiny[1](p)["input_ids"]) for p in PROMPTS]


def test_end_of_sequence_ends_a_row(engine, alone):
    ids = alone.tokenizer(alone.complete(ask(PROMPTS[0], max_tokens=8)).message.text)["input_ids"]
    engine._eos = {ids[3]}  # pretend the model's fourth answer token is its end-of-sequence
    r = engine.complete(ask(PROMPTS[0], max_tokens=8))
    assert r.finish_reason == "stop" and r.usage.output_tokens == 4
    assert r.message.text == alone.tokenizer.decode(ids[:3])


def test_sampling_settings_split_batches_and_seeds_make_samples_repeatable(engine, alone):
    keys = []
    generate = engine._generate
    engine._generate = lambda batch: (keys.append({j.key for j in batch}), generate(batch))[1]
    reqs = [ask(p, max_tokens=6) for p in PROMPTS[:4]] + [ask(p, max_tokens=6, temperature=1.0, seed=i)
                                                          for i, p in enumerate(PROMPTS[4:])]
    batched = concurrently(engine, reqs)
    assert all(len(k) == 1 for k in keys) and len(keys) >= 2  # never two settings in one generate call
    assert [summary(r) for r in batched] == [summary(alone.complete(r)) for r in reqs]


def test_sampling_without_a_seed_varies_from_call_to_call(engine):
    outs = {engine.complete(ask(PROMPTS[1], max_tokens=8, temperature=1.5)).message.text for _ in range(4)}
    assert len(outs) > 1


# ---------------------------------------------------------------- memory bound

def test_batch_size_is_bounded_by_free_memory(tiny, monkeypatch):
    e = TorchEngine(tiny[0], tokenizer=tiny[1], batch_wait_ms=50)
    shortest = min(len(tiny[1](p)["input_ids"]) for p in PROMPTS)
    per_seq = te.sequence_bytes(e.model.config, e.dtype, shortest, 8)  # room for 3.5 of the smallest requests
    monkeypatch.setattr(te, "free_memory", lambda device: int(3.5 * per_seq / (1 - te.MEMORY_RESERVE)))
    assert e.max_batch_size_for(shortest, 8) == 3
    concurrently(e, [ask(p, max_tokens=8) for p in PROMPTS])
    assert sum(e.batch_sizes) == 8 and max(e.batch_sizes) <= 3
    e.close()


def test_explicit_max_batch_size_caps_the_memory_bound(tiny):
    e = TorchEngine(tiny[0], tokenizer=tiny[1], max_batch_size=3, batch_wait_ms=50)
    assert e.max_batch_size_for(10, 10) == 3 and e.max_batch_size_for(10, 10, free_bytes=0) == 1
    concurrently(e, [ask(p, max_tokens=4) for p in PROMPTS])
    assert max(e.batch_sizes) <= 3
    e.close()
    assert TorchEngine(tiny[0], tokenizer=tiny[1]).max_batch_size_for(10, 10) == DEFAULT_MAX_BATCH
    with pytest.raises(ValueError, match="Fix:"): TorchEngine(tiny[0], tokenizer=tiny[1], max_batch_size=0)


def test_out_of_memory_halves_the_batch(engine, alone, monkeypatch):
    generate = engine.model.generate
    def tight(*a, input_ids, **kw):
        if input_ids.shape[0] > 2: raise torch.OutOfMemoryError("pretend: too many rows")
        return generate(*a, input_ids=input_ids, **kw)
    monkeypatch.setattr(engine.model, "generate", tight)
    batched = concurrently(engine, [ask(p, max_tokens=5) for p in PROMPTS])
    assert [summary(r) for r in batched] == [summary(alone.complete(ask(p, max_tokens=5))) for p in PROMPTS]
    assert any(n > 2 for n in engine.batch_sizes) and sum(n for n in engine.batch_sizes if n <= 2) == 8


# ---------------------------------------------------------------- errors and lifecycle

def test_an_error_in_generate_reaches_every_caller_and_the_engine_recovers(engine, monkeypatch):
    generate = engine.model.generate
    monkeypatch.setattr(engine.model, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    start = threading.Barrier(4)
    def call(p):
        start.wait()
        try: engine.complete(ask(p, max_tokens=3))
        except GenerationError as e: return e
    with ThreadPoolExecutor(4) as ex: errors = list(ex.map(call, PROMPTS[:4]))
    assert all(isinstance(e, GenerationError) and "boom" in str(e) and "Fix:" in str(e) for e in errors)
    assert all(isinstance(e.__cause__, RuntimeError) for e in errors)
    monkeypatch.setattr(engine.model, "generate", generate)
    assert engine.complete(ask(PROMPTS[0], max_tokens=3)).message.text


def test_a_failure_while_forming_a_batch_fails_the_callers_instead_of_hanging_them(engine, monkeypatch):
    def broken(device): raise RuntimeError("no memory reading")
    monkeypatch.setattr(te, "free_memory", broken)
    with pytest.raises(GenerationError, match="no memory reading"): engine.complete(ask(PROMPTS[0], max_tokens=3))
    monkeypatch.undo()
    assert engine.complete(ask(PROMPTS[0], max_tokens=3)).message.text  # the worker lived on


def test_a_prompt_longer_than_the_context_is_refused_with_the_fix(engine):
    with pytest.raises(ContextLengthError, match="max_tokens=") as e:
        engine.complete(ask("film " * 400, max_tokens=200))
    assert "Fix:" in str(e.value)
    with pytest.raises(ContextLengthError): engine.complete(ask("film " * 600, max_tokens=8))
    assert len(engine.batch_sizes) == 0  # refused before it reached the model


def test_close_answers_what_is_queued_and_a_later_request_restarts_the_worker(tiny, monkeypatch):
    e = TorchEngine(tiny[0], tokenizer=tiny[1], max_batch_size=1)
    generate, release = e.model.generate, threading.Event()
    monkeypatch.setattr(e.model, "generate", lambda *a, **k: (release.wait(30), generate(*a, **k))[1])
    with ThreadPoolExecutor(5) as ex:
        futures = [ex.submit(e.complete, ask(p, max_tokens=3)) for p in PROMPTS[:4]]
        deadline = time.monotonic() + 30
        while (e._queue is None or e._queue.qsize() < 3) and time.monotonic() < deadline: time.sleep(0.01)
        assert e._queue.qsize() == 3  # one request held in generate, three queued
        closing = ex.submit(e.close)
        time.sleep(0.05); release.set()
        closing.result(timeout=30)
        results = [f.result(timeout=30) for f in futures]
    assert all(r.message.text for r in results) and e._worker is None
    assert e.complete(ask(PROMPTS[0], max_tokens=3)).message.text == results[0].message.text
    e.close(); e.close()  # idempotent


def test_chat_mode_needs_a_chat_template(tiny):
    model, tok = tiny_model()
    with pytest.raises(ValueError, match="chat=False"):
        TorchEngine(model, tokenizer=tok, chat=True).complete(ask("hello"))
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant :{% endif %}")
    e = TorchEngine(model, tokenizer=tok, chat=True)
    req = Request(model="tiny", system="Answer .", messages=(Message.user("what is two plus two ?"),),
                  config=Config(max_tokens=3))
    r = e.complete(req)
    assert r.usage.input_tokens == len(tok("system : Answer . user : what is two plus two ? assistant :")["input_ids"])
    e.close()


def test_missing_models_fail_with_the_fix():
    with pytest.raises(ModelFileError, match="hf download"): load_causal_lm("no-such-org/no-such-model")
    with pytest.raises(ModelFileError, match="No GGUF file"): load_causal_lm("/nonexistent/model.gguf")
    with pytest.raises(ModelFileError, match="No model at"): load_causal_lm("/nonexistent/model-dir")
    with pytest.raises(ValueError, match="device="):
        if torch.cuda.is_available(): pytest.skip("this machine has a GPU")
        TorchEngine("/nonexistent/model-dir", device="cuda")


def test_device_info_names_the_device(engine):
    info = engine.device_info()
    assert info["engine"] == "torch" and info["device"] == str(engine.device) and info["dtype"] == "float32"
    assert info["backend"] in ("cuda", "rocm", "mps", "cpu") and info["device_name"]
    assert ("memory_total" in info) == (engine.device.type == "cuda")


# ---------------------------------------------------------------- behind dspy.LM

def test_dspy_lm_caches_so_a_repeated_call_does_not_reach_the_engine(engine, tmp_cache):
    model = dspy.LM(f"torch/{engine.name}", engine=engine, temperature=0.0, max_tokens=5)
    prompt = f"Review: {uuid.uuid4().hex} film .\nSentiment:"
    with dspy.context(track_usage=True):
        first = model(prompt)
        calls = len(engine.batch_sizes)
        second = model(prompt)
    assert first == second and calls == 1 and len(engine.batch_sizes) == 1
    assert model.history[0]["usage"]["completion_tokens"] == 5


def test_a_saved_model_directory_through_lm_and_its_saved_state(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "tiny"); tok.save_pretrained(tmp_path / "tiny")
    from_dir = lm(f"torch:{tmp_path / 'tiny'}", max_tokens=4, cache=False, max_batch_size=4)
    assert is_base_model(from_dir) and from_dir.model.startswith("torch/tiny-")   # named by its weights: issue 10.2
    in_memory = TorchEngine(model, tokenizer=tok)
    assert from_dir(PROMPTS[0]) == [in_memory.complete(ask(PROMPTS[0], max_tokens=4)).message.text]
    state = from_dir.engine.dump_state()
    assert state["model"] == str(tmp_path / "tiny") and state["max_batch_size"] == 4
    assert TorchEngine.load_state(state).complete(ask(PROMPTS[0], max_tokens=4)).message.text == from_dir(PROMPTS[0])[0]
    with pytest.raises(ValueError, match="save_pretrained"): in_memory.dump_state()


# ---------------------------------------------------------------- the real model

@pytest.mark.slow
def test_embedded_gguf_through_transformers():
    "Gemma 3 270M Q4_K_M, dequantized by transformers (the first run converts it: minutes; later runs: seconds)."
    pytest.importorskip("gguf", reason="transformers reads GGUF files only with the `gguf` package: pip install gguf")
    pytest.importorskip("accelerate", reason="transformers loads GGUF files only with `accelerate`: pip install accelerate")
    from dspyopt_nb.engines.llama import local_model_path
    try: engine = TorchEngine(local_model_path(), max_tokens=3, batch_wait_ms=50)
    except ModelFileError as e:
        if "transformers could not read" in str(e): pytest.skip(f"transformers cannot dequantize this GGUF: {e}")
        raise
    demos = ("Review: a gorgeous, witty, seductive movie .\nSentiment: positive\n\n"
             "Review: dull and lifeless , a film that never finds its footing .\nSentiment: negative\n\n")
    reviews = {"it 's a charming and often affecting journey .": "positive", "the plot is a tedious mess .": "negative",
               "one of the worst films of the year .": "negative", "a delightful , funny and moving film .": "positive"}
    reqs = [ask(f"{demos}Review: {r}\nSentiment:", max_tokens=3, stop=("\n",)) for r in reviews]
    batched = concurrently(engine, reqs)
    assert max(engine.batch_sizes) > 1
    labels = [r.message.text.strip() for r in batched]
    assert set(labels) <= {"positive", "negative"}, labels
    assert sum(got == want for got, want in zip(labels, reviews.values())) >= 3, labels  # a 270M model: mostly right
    assert [r.message.text for r in batched] == [engine.complete(r).message.text for r in reqs]
    assert all(r.usage.input_tokens > 40 and 1 <= r.usage.output_tokens <= 3 for r in batched)
    engine.close()

def test_identity_follows_the_weights_and_dtype():
    "Issue 10.2: two models with the same name but different weights are two models to DSPy's cache."
    from dspyopt_nb.engines.torch_engine import TorchEngine
    from dspyopt_nb.engines.torch_models import tiny_model
    (m0, t0), (m1, t1) = tiny_model(0), tiny_model(1)
    a, b = TorchEngine(m0, tokenizer=t0), TorchEngine(m1, tokenizer=t1)
    assert a.label == b.label == "tiny-word-llama" and a.name != b.name
    assert TorchEngine(tiny_model(0)[0], tokenizer=t0).name == a.name
    assert TorchEngine(tiny_model(0)[0], tokenizer=t0, dtype="bfloat16").name != a.name
