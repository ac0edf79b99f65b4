"""The demo's optimized program against the prompts a person would write, on the same held-out SST-2 rows, in one run.

Anchors, with raw llama-cpp-python and plain `Review: ...\\nSentiment:` prompts: zero-shot with an instruction, and a
hand-written 8-shot prompt (4 positive, 4 negative training reviews). The optimized program is the demo's (MIPROv2,
light preset, 200 train / 100 val), run here with --n-test held-out reviews (SST-2 has 872; default 500). Issue 10's
goal: the optimized program beats the hand-written 8-shot prompt with p < 0.05; the script prints whether it did.

    .venv/bin/python benchmarks/demo_vs_handwritten.py [--n-test 500] [--optimizer mipro] [--preset light]
"""
import argparse, os, time
os.environ.setdefault("DSPYOPT_NO_PROGRESS", "1")
from _common import write_result
import dspy
from dspyopt_nb.data import load_task
from dspyopt_nb.demo import run_demo
from dspyopt_nb.engines.adapter import AutoAdapter
from dspyopt_nb.engines.llama import local_model_path
from dspyopt_nb.engines.lm import lm
from dspyopt_nb.run.recorder import evaluate_scores
from dspyopt_nb.stats import compare_paired

ap = argparse.ArgumentParser(); ap.add_argument("--optimizer", default="mipro"); ap.add_argument("--preset", default="light")
ap.add_argument("--seed", type=int, default=0); ap.add_argument("--n-test", type=int, default=500); ap.add_argument("--out", default=None)
a = ap.parse_args()

task = load_task("sst2")
sp = task.splits(n_train=200, n_val=100, n_test=a.n_test, seed=a.seed)
t0 = time.time()
res = run_demo(optimizer=a.optimizer, preset=a.preset, seed=a.seed, n_test=a.n_test, tracking=False)
print(f"(optimized program ready after {time.time() - t0:.0f} s)\n")

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
opt = res.optimized_scores  # the same rows: run_demo's held-out test split is sp.test
assert len(opt) == len(sp.test)

n = len(sp.test)
rows = dict(zero_shot=sum(zero) / n, handwritten_8shot=sum(eight) / n, optimized=sum(opt) / n, baseline_program=res.baseline)
print(f"SST-2, {n} held-out rows (never seen by the optimizer), Gemma 3 270M Q4_K_M on {os.cpu_count()} CPU cores")
print(f"  zero-shot with instruction (raw llama.cpp) : {rows['zero_shot']:.3f}   ({tz:.0f} s)")
print(f"  hand-written 8-shot prompt (raw llama.cpp) : {rows['handwritten_8shot']:.3f}   ({t8:.0f} s)")
print(f"  optimized program ({a.optimizer}/{a.preset})          : {rows['optimized']:.3f}")
tests = {}
for name, base in [("zero_shot", zero), ("handwritten_8shot", eight)]:
    c = compare_paired(base, opt, seed=0)
    tests[name] = c.to_dict()
    print(f"  optimized vs {name:17s}: diff {c.diff:+.3f} [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}], p = {c.p_value:.2g} ({c.test})")
goal = tests["handwritten_8shot"]["diff"] > 0 and tests["handwritten_8shot"]["p_value"] < 0.05
print(f"  goal (beats the hand-written 8-shot prompt with p < 0.05): {'met' if goal else 'NOT met'}")
path = write_result("demo_vs_handwritten", dict(n_test=n, optimizer=a.optimizer, preset=a.preset, seed=a.seed, accuracy=rows,
                                                 tests=tests, goal_met=goal, run_id=res.run_id), a.out)
print(f"written to {path}")
