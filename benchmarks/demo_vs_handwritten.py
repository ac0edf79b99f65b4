"""The demo's optimized program against the two hand-written anchors, on the same held-out SST-2 rows, in one run.

Anchors (measured with raw llama-cpp-python and plain `Review: ...\\nSentiment:` prompts):
  zero-shot with an instruction, and a hand-written 8-shot prompt (4 positive, 4 negative training reviews).
The optimized program is the one `make demo` produced (same task, splits and seed); if that run is not there yet,
this script runs it first (it resumes from the cache when it can).

    .venv/bin/python benchmarks/demo_vs_handwritten.py [--optimizer mipro] [--budget light]
"""
import argparse, os, time
os.environ.setdefault("DSPYOPT_NO_PROGRESS", "1")
import dspy
from dspyopt_nb.adapter import AutoAdapter
from dspyopt_nb.data import load_task
from dspyopt_nb.lm import lm, local_model_path
from dspyopt_nb.optimize import evaluate_scores
from dspyopt_nb.stats import compare_paired

ap = argparse.ArgumentParser(); ap.add_argument("--optimizer", default="mipro"); ap.add_argument("--budget", default="light")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

task = load_task("sst2")
sp = task.splits(n_train=200, n_val=100, n_test=300, seed=a.seed)   # the demo's splits
from dspyopt_nb.demo import run_demo
t0 = time.time()
res = run_demo(a.optimizer, a.budget, seed=a.seed)
print(f"(demo result ready after {time.time() - t0:.0f} s: {'from its run directory' if time.time() - t0 < 30 else 'ran now'})\n")

from llama_cpp import Llama
llm = Llama(model_path=str(local_model_path()), n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
def raw_accuracy(prefix):
    hits, t = [], time.time()
    for ex in sp.test:
        out = llm.create_completion(f"{prefix}Review: {ex.review}\nSentiment:", max_tokens=3, temperature=0.0, stop=["\n"])
        words = out["choices"][0]["text"].strip().lower().split()
        hits.append(float(bool(words) and words[0].strip(".,") == ex.sentiment))
    return hits, time.time() - t

instruction = "Classify the sentiment of a movie review as positive or negative.\n\n"
pos = [e for e in sp.train if e.sentiment == "positive"][:4]; neg = [e for e in sp.train if e.sentiment == "negative"][:4]
shots = "".join(f"Review: {e.review}\nSentiment: {e.sentiment}\n\n" for pair in zip(pos, neg) for e in pair)
zero, tz = raw_accuracy(instruction)
eight, t8 = raw_accuracy(instruction + shots)

prog = res.load_program(task.program())
L = lm("local", cache=False)
t = time.time()
with dspy.context(lm=L, adapter=AutoAdapter()):
    opt = evaluate_scores(prog, sp.test, task.metric)
to = time.time() - t

n = len(sp.test)
print(f"SST-2, {n} held-out rows (never seen by the optimizer), Gemma 3 270M Q4_K_M on {os.cpu_count()} CPU cores")
print(f"  zero-shot with instruction (raw llama.cpp) : {sum(zero) / n:.3f}   ({tz:.0f} s)   anchor measured before: 0.43")
print(f"  hand-written 8-shot prompt (raw llama.cpp) : {sum(eight) / n:.3f}   ({t8:.0f} s)   anchor measured before: 0.80")
print(f"  optimized program ({a.optimizer}/{a.budget})          : {sum(opt) / n:.3f}   ({to:.0f} s)")
for name, base in [("zero-shot", zero), ("8-shot", eight)]:
    c = compare_paired(base, opt, seed=0)
    print(f"  optimized vs {name:9s}: diff {c.diff:+.3f} [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}], relative {c.relative_lift:+.1%}, p = {c.p_value:.2g} ({c.test})")
print(f"  demo wall time (optimization + held-out evaluation): {res.usage['wall_s']:.0f} s")
