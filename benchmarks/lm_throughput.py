"""Embedded engine throughput: dspy.LM(engine=LlamaCppEngine) against raw llama-cpp-python on the same prompts, and
the per-call overhead of dspy.LM over a zero-latency engine. One run, side by side.

    .venv/bin/python benchmarks/lm_throughput.py [--n 50] [--max-tokens 24]
"""
import argparse, os, statistics, sys, time
os.environ.setdefault("DSPY_CACHEDIR", "/tmp/dspyopt-bench-cache")

import dspy
from dspyopt_nb.data import load_task
from dspyopt_nb.engines.lm import lm
from dspyopt_nb.engines.scripted import ScriptedEngine
from dspyopt_nb.engines.llama import LlamaCppEngine, local_model_path

ap = argparse.ArgumentParser(); ap.add_argument("--n", type=int, default=50); ap.add_argument("--max-tokens", type=int, default=24)
ap.add_argument("--rounds", type=int, default=2)
a = ap.parse_args()

task = load_task("sst2")
rows = task.examples()
demos = "\n\n".join(f"Review: {r.review}\nSentiment: {r.sentiment}" for r in rows[:4])
prompts = [f"{demos}\n\nReview: {r.review}\nSentiment:" for r in rows[100:100 + a.n]]  # shared prefix, input last

def raw_run(llm):
    t, toks = time.perf_counter(), 0
    for p in prompts:
        out = llm.create_completion(p, max_tokens=a.max_tokens, temperature=0.0)
        toks += out["usage"]["completion_tokens"]
    return toks, time.perf_counter() - t

def dspy_run(L):
    t, toks = time.perf_counter(), 0
    for p in prompts:
        L(p)
        toks += L.history[-1]["usage"]["completion_tokens"]
    return toks, time.perf_counter() - t

from llama_cpp import Llama
eng = LlamaCppEngine(n_ctx=2048)
raw = Llama(model_path=str(local_model_path()), n_ctx=2048, n_threads=eng.n_threads, n_batch=512, verbose=False)
L = dspy.LM(f"local/{eng.name}", engine=eng, cache=False, max_tokens=a.max_tokens, temperature=0.0)
raw_run(raw); dspy_run(L)                          # warm both (model pages, first prompt prefix)
raw_tps, dspy_tps = [], []
for _ in range(a.rounds):                           # alternate, so drift on a shared machine hits both
    tk, s = raw_run(raw); raw_tps.append(tk / s)
    tk, s = dspy_run(L); dspy_tps.append(tk / s)
r, d = statistics.median(raw_tps), statistics.median(dspy_tps)
print(f"prompts: {len(prompts)} few-shot SST-2 prompts, max_tokens={a.max_tokens}, greedy, n_threads={eng.n_threads}")
print(f"raw llama-cpp-python     : {r:7.1f} generated tokens/s (rounds: {', '.join(f'{x:.1f}' for x in raw_tps)})")
print(f"dspy.LM + LlamaCppEngine : {d:7.1f} generated tokens/s (rounds: {', '.join(f'{x:.1f}' for x in dspy_tps)})")
print(f"ratio dspy.LM / raw      : {d / r:.3f}   (goal >= 0.95)")

# overhead of the dspy.LM layer per call, against a zero-latency engine
zero = ScriptedEngine(lambda p: " positive")
Z = dspy.LM("scripted/zero", engine=zero, cache=False)
from dspy.lm15 import Config, Message, Request
reqs = [Request(model="x", messages=(Message.user(p),), config=Config(max_tokens=4)) for p in prompts]
t = time.perf_counter()
for _ in range(4):
    for q in reqs: zero.complete(q)
direct = (time.perf_counter() - t) / (4 * len(reqs))
t = time.perf_counter()
for _ in range(4):
    for p in prompts: Z(p)
through = (time.perf_counter() - t) / (4 * len(prompts))
per_call_local = (sum(1 for _ in prompts) and (len(prompts) * a.max_tokens / d) / len(prompts))
print(f"zero-latency engine: {direct * 1e3:.3f} ms/call direct, {through * 1e3:.3f} ms/call through dspy.LM "
      f"-> dspy.LM adds {(through - direct) * 1e3:.2f} ms per call ({(through - direct) / per_call_local:.1%} of an embedded-model call here)")
