"""The served program's answers for the drift benchmark: the SST-2 program with 8 demos, run once by the embedded Gemma 3
270M on every SST-2 review (but its 8 demos) and on samples of AG News articles and Banking77 queries.

    nice -n 10 python benchmarks/drift_answers.py --n-other 300 --cache /work/scratch/learn/predictions.jsonl
    python benchmarks/drift_answers.py --no-model      # only rewrite the compact file from the cache

The model's answers go to --cache as they come (resumable: a killed run continues where it stopped); the compact file
`dspyopt_nb/data/learn/sst2_program_answers.jsonl` (domain, row of the bundled file, answer) is what the package ships
and `dspyopt_nb.learn.streams` reads. Texts are interleaved (3 reviews : 1 article : 1 query), so a partial cache
covers every domain.
"""
import argparse, json, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dspyopt_nb.data import DATA_DIR, load_task
from dspyopt_nb.learn.streams import ANSWERS_FILE, TEXT_FIELD


def texts(n_other: int) -> list[tuple[str, int, str]]:
    "(domain, row, text) in the order the model answers them."
    sst2 = load_task("sst2")
    demos = {ex.review for ex in sst2.splits(n_train=8, n_val=0, n_test=0, seed=0).train}
    main = [("sst2", i, ex.review) for i, ex in enumerate(sst2.examples()) if ex.review not in demos]
    others = [[(d, i, ex[TEXT_FIELD[d][0]]) for i, ex in enumerate(load_task(d).examples()[:n_other])] for d in ("agnews", "banking77")]
    out = []
    for i in range(max(len(main), 3 * n_other)):
        if i < len(main): out.append(main[i])
        if i % 3 == 2: out += [o[i // 3] for o in others if i // 3 < len(o)]
    return out


def program():
    sst2 = load_task("sst2")
    prog = sst2.program()
    prog.demos = [ex.toDict() for ex in sst2.splits(n_train=8, n_val=0, n_test=0, seed=0).train]
    return prog


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-other", type=int, default=300, help="AG News articles and Banking77 queries to answer (each)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "dspyopt" / "drift_answers.jsonl"))
    ap.add_argument("--no-model", action="store_true", help="only write the compact file from what the cache holds")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    a = ap.parse_args()
    cache = Path(a.cache); cache.parent.mkdir(parents=True, exist_ok=True)
    order = texts(a.n_other)
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            try: r = json.loads(line); done[(r["domain"], r["text"])] = r["pred"]
            except (ValueError, KeyError): pass   # a half-written last line
    if not a.no_model:
        import dspy
        from dspyopt_nb.engines.adapter import AutoAdapter
        from dspyopt_nb.engines.lm import lm
        prog, t0, n = program(), time.time(), 0
        with open(cache, "a") as f, dspy.context(lm=lm("local", n_threads=a.threads), adapter=AutoAdapter()):
            for domain, row, text in order:
                if (domain, text) in done: continue
                try: pred = str(prog(review=text).sentiment)
                except Exception: pred = None
                done[(domain, text)] = pred
                f.write(json.dumps(dict(domain=domain, text=text, pred=pred)) + "\n"); f.flush(); n += 1
                if n % 50 == 0: print(f"{n} answered, {(time.time() - t0) / n:.2f} s each", flush=True)
    rows = [dict(domain=d, row=r, answer=done[(d, t)]) for d, r, t in order if (d, t) in done]
    ANSWERS_FILE.parent.mkdir(parents=True, exist_ok=True)
    ANSWERS_FILE.write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = {d: sum(r["domain"] == d for r in rows) for d in TEXT_FIELD}
    print(f"{ANSWERS_FILE}: {len(rows)} answers {counts}")


if __name__ == "__main__":
    main()
