"""Batched vs one-at-a-time: the embedded Gemma 3 270M through transformers on torch (CUDA/ROCm when present, else CPU).

Runs N few-shot SST-2 sentiment prompts twice on the same loaded model: from T threads through
`dspy.LM(engine=TorchEngine(...))`, so the engine micro-batches them, and sequentially with max_batch_size=1.
Prints the device, tokens/s for both, the speed-up ratio, the batch sizes seen, and a JSON summary line.

    python benchmarks/torch_engine_gpu.py            # 64 prompts, 8 threads (a GPU machine)
    python benchmarks/torch_engine_gpu.py --n 16     # a quick CPU run

The first run on a machine converts the GGUF for transformers (minutes, mostly parsing its vocabulary); the copy
is cached under $DSPYOPT_CACHE (default ~/.cache/dspyopt/torch), so later runs load in seconds.
"""
import argparse, json, time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dspy
import torch

import dspyopt_nb
from dspyopt_nb.engines.llama import local_model_path
from dspyopt_nb.engines.torch_engine import TorchEngine

FALLBACK = [("a gorgeous, witty, seductive movie .", "positive"), ("dull and lifeless .", "negative"),
            ("a charming and often affecting journey .", "positive"), ("unflinchingly bleak and desperate", "negative"),
            ("a masterpiece of warmth and wit .", "positive"), ("the plot is a tedious mess .", "negative"),
            ("one of the worst films of the year .", "negative"), ("a delightful , funny and moving film .", "positive")]


def examples() -> list[tuple[str, str]]:
    "(text, label) pairs: the bundled SST-2 dev split when present, else a few made-up reviews."
    path = Path(dspyopt_nb.__file__).parent / "data" / "sst2" / "dev.jsonl"
    if not path.is_file(): return FALLBACK
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["text"], r["label"]) for r in rows]


def prompts(n: int, shots: int) -> list[tuple[str, str]]:
    "n few-shot prompts (the first `shots` examples as demos, then one review to label) and their gold labels."
    data = examples()
    demos, rest = data[:shots], data[shots:] or data
    head = "".join(f"Review: {t}\nSentiment: {y}\n\n" for t, y in demos)
    return [(f"{head}Review: {t}\nSentiment:", y) for t, y in (rest[i % len(rest)] for i in range(n))]


def run(lm: dspy.LM, texts: list[str], threads: int) -> tuple[list[str], float, int, int]:
    "Answers, wall seconds, prompt tokens and output tokens, for all texts sent from `threads` threads."
    start, before = time.perf_counter(), len(lm.history)
    if threads > 1:
        with ThreadPoolExecutor(threads) as ex: answers = list(ex.map(lambda t: lm(t, stop=["\n"])[0], texts))
    else: answers = [lm(t, stop=["\n"])[0] for t in texts]
    wall = time.perf_counter() - start
    usage = [h["usage"] for h in lm.history[before:]]
    return answers, wall, sum(u["prompt_tokens"] for u in usage), sum(u["completion_tokens"] for u in usage)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="number of prompts (default 64; use 16 on a CPU)")
    ap.add_argument("--threads", type=int, default=8, help="DSPy-style caller threads for the batched run")
    ap.add_argument("--shots", type=int, default=8, help="demos in each few-shot prompt")
    ap.add_argument("--max-tokens", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None, help="default: bfloat16/float16 on a GPU, float32 on a CPU")
    args = ap.parse_args()

    t0 = time.perf_counter()
    batched_engine = TorchEngine(local_model_path(), device=args.device, dtype=args.dtype, max_tokens=args.max_tokens)
    load_s = time.perf_counter() - t0
    # the same weights, one request per generate call: the baseline
    single_engine = TorchEngine(batched_engine.model, tokenizer=batched_engine.tokenizer, device=batched_engine.device,
                                max_batch_size=1)
    info = batched_engine.device_info()
    print("device:", json.dumps(info))
    print(f"model loaded in {load_s:.1f}s; torch {torch.__version__}, hip={torch.version.hip}, cuda={torch.version.cuda}")

    work = prompts(args.n, args.shots)
    texts, gold = [p for p, _ in work], [y for _, y in work]
    kw = dict(cache=False, temperature=0.0, max_tokens=args.max_tokens)
    batched_lm = dspy.LM(f"torch/{batched_engine.name}", engine=batched_engine, **kw)
    single_lm = dspy.LM(f"torch/{single_engine.name}", engine=single_engine, **kw)
    for model in (batched_lm, single_lm): model(texts[0], stop=["\n"])  # warm-up: kernels, allocator
    batched_engine.batch_sizes.clear()

    b_ans, b_wall, b_in, b_out = run(batched_lm, texts, args.threads)
    s_ans, s_wall, s_in, s_out = run(single_lm, texts, 1)
    sizes = list(batched_engine.batch_sizes)

    def line(name, wall, n_in, n_out):
        print(f"{name:>10}: {wall:7.2f}s  {len(texts) / wall:6.2f} prompts/s  {(n_in + n_out) / wall:9.1f} tokens/s "
              f"(prompt+output)  {n_out / wall:7.1f} output tokens/s  [{n_in} prompt, {n_out} output tokens]")
    print(f"{len(texts)} prompts, {args.shots}-shot, ~{b_in // len(texts)} prompt tokens each, {args.threads} threads")
    line("batched", b_wall, b_in, b_out)
    line("one-by-one", s_wall, s_in, s_out)
    speedup = s_wall / b_wall
    same = sum(a == b for a, b in zip(b_ans, s_ans))
    acc = lambda ans: sum(a.strip() == y for a, y in zip(ans, gold)) / len(gold)
    print(f"speed-up (batched vs one-by-one, same tokens): {speedup:.2f}x")
    print(f"batch sizes: {len(sizes)} generate calls, mean {sum(sizes) / len(sizes):.1f}, max {max(sizes)}, "
          f"histogram {dict(sorted(Counter(sizes).items()))}")
    print(f"answers identical batched vs one-by-one: {same}/{len(texts)}; accuracy batched {acc(b_ans):.2f}, "
          f"one-by-one {acc(s_ans):.2f}")
    if batched_engine.device.type == "cuda":
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated(batched_engine.device) / 2**20:.0f} MiB")
    print("SUMMARY " + json.dumps(dict(device=info, n=len(texts), threads=args.threads, shots=args.shots,
                                       load_s=round(load_s, 1), batched_s=round(b_wall, 3), single_s=round(s_wall, 3),
                                       batched_tok_s=round((b_in + b_out) / b_wall, 1),
                                       single_tok_s=round((s_in + s_out) / s_wall, 1), speedup=round(speedup, 2),
                                       batch_sizes=sizes, identical=same, accuracy=acc(b_ans))))
    batched_engine.close(); single_engine.close()


if __name__ == "__main__":
    main()
