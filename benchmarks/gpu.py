"""GPU acceleration, measured: the torch engine serving many concurrent runs on one GPU (micro-batched across runs,
memory-aware batch bound, back-off on out-of-memory), and the statistics' bootstrap on the GPU, against one-at-a-time
generation and scipy on the CPU. Writes benchmarks/results/gpu.json (or --out) with the device and versions.

    python benchmarks/gpu.py                 # on a machine with CUDA (or ROCm): the measurement
    python benchmarks/gpu.py --small         # on a CPU: the same code paths at small sizes, as a correctness check

GPU figures are reported only from a file this script wrote on a GPU ("device" says which). The model is a randomly
initialised Llama built in memory (the embedded GGUF is too large to carry to a lent GPU machine): batching does not
need a good model, only a real one of a realistic width.
"""
import argparse, json, os, statistics, sys, threading, time, traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

import numpy as np
import torch

ap = argparse.ArgumentParser(); ap.add_argument("--small", action="store_true"); ap.add_argument("--out", default=None)
ap.add_argument("--requests", type=int, default=None); ap.add_argument("--runs", type=int, default=None)
a = ap.parse_args()
cuda = torch.cuda.is_available()
small = a.small or not cuda
out = dict(device=torch.cuda.get_device_name(0) if cuda else "cpu", cuda=cuda, hip=getattr(torch.version, "hip", None),
           torch=torch.__version__, cuda_version=torch.version.cuda, small=small, sections={})
print(json.dumps({k: out[k] for k in ("device", "torch", "cuda_version", "hip", "small")}), flush=True)

def section(name):
    def deco(fn):
        t0 = time.perf_counter()
        try: out["sections"][name] = dict(ok=True, **fn())
        except Exception as e:
            traceback.print_exc()
            out["sections"][name] = dict(ok=False, error=f"{type(e).__name__}: {e}")
        out["sections"][name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(out["sections"][name], default=str)[:1500], flush=True)
    return deco

# --- 1. the bootstrap on the GPU against scipy ----------------------------------------------------------------------
@section("bootstrap")
def _():
    import scipy.stats as sps
    from dspyopt_nb.gpu_stats import torch_paired_bootstrap
    n, B = (2000, 2000) if small else (10_000, 10_000)
    rng = np.random.default_rng(0)
    rows = {}
    for kind, (x, y) in {"binary": (rng.binomial(1, 0.70, n).astype(float), rng.binomial(1, 0.72, n).astype(float)),
                         "continuous": (rng.beta(5, 3, n), np.clip(rng.beta(5, 3, n) + 0.01, 0, 1))}.items():
        t = time.perf_counter()
        sp = sps.bootstrap((y - x,), np.mean, n_resamples=B, method="BCa", batch=1000, rng=np.random.default_rng(0))
        t_scipy = time.perf_counter() - t
        dev = "cuda" if cuda else "cpu"
        torch_paired_bootstrap(x, y, n_resamples=B, device=dev)  # warm-up (CUDA context, kernels)
        times = []
        for _ in range(3):
            t = time.perf_counter(); ci = torch_paired_bootstrap(x, y, n_resamples=B, device=dev, seed=1); times.append(time.perf_counter() - t)
        lo, hi = float(sp.confidence_interval.low), float(sp.confidence_interval.high)
        se = float(sp.standard_error)
        rows[kind] = dict(n=n, resamples=B, scipy_s=round(t_scipy, 4), torch_s=round(min(times), 5), device=dev,
                          speedup=round(t_scipy / min(times), 1), scipy_ci=[lo, hi], torch_ci=list(ci.ci),
                          ci_gap_in_se=round(max(abs(ci.ci[0] - lo), abs(ci.ci[1] - hi)) / se, 3))
        assert rows[kind]["ci_gap_in_se"] < 0.5, f"the torch interval disagrees with scipy's: {rows[kind]}"
    return rows

# --- 2. the torch engine: many concurrent runs on one GPU --------------------------------------------------------------
def model_for_bench(width: int, layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM
    from dspyopt_nb.engines.torch_models import tiny_model
    _, tok = tiny_model(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                      num_attention_heads=max(4, width // 64), num_key_value_heads=max(1, width // 256), max_position_embeddings=1024,
                      pad_token_id=0, eos_token_id=1, bos_token_id=2, initializer_range=0.2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0); model = LlamaForCausalLM(cfg).eval()
    model.config.name_or_path = f"bench-llama-{width}x{layers}"
    return model, tok

@section("engine")
def _():
    from dspy.lm15 import Config, Message, Request
    from dspyopt_nb.engines.torch_engine import TorchEngine
    from dspyopt_nb.engines.torch_models import backend_of
    width, layers = (64, 2) if small else (1024, 8)
    n_req = a.requests or (24 if small else 256)
    n_runs = a.runs or (6 if small else 64)
    model, tok = model_for_bench(width, layers)
    words = [w for w in tok.get_vocab() if not w.startswith("<")]
    prompts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(30 + i % 17)) for i in range(n_req)]
    req = lambda p: Request(model="bench", messages=(Message.user(p),), config=Config(max_tokens=32, temperature=0.0))
    batched = TorchEngine(model, tokenizer=tok, device="auto", batch_wait_ms=10)
    batched.complete(req(prompts[0]))  # warm up
    if cuda: torch.cuda.reset_peak_memory_stats()
    batched.batch_sizes.clear()
    # n_runs "runs", each sending its share of the requests one after another, as optimizations do
    share = [prompts[i::n_runs] for i in range(n_runs)]
    answers = {}
    def run(k):
        for p in share[k]: answers[p] = batched.complete(req(p)).message.text
    t = time.perf_counter()
    with ThreadPoolExecutor(n_runs) as ex: list(ex.map(run, range(n_runs)))
    t_batched = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    sizes = list(batched.batch_sizes)
    single = TorchEngine(model, tokenizer=tok, device="auto", max_batch_size=1)
    single.complete(req(prompts[0]))
    n_single = min(n_req, 16 if small else 64)
    t = time.perf_counter()
    alone = [single.complete(req(p)).message.text for p in prompts[:n_single]]
    t_single = (time.perf_counter() - t) / n_single * n_req   # per request, scaled to the same number of requests
    same = sum(answers[p] == x for p, x in zip(prompts, alone))
    bound = batched.max_batch_size_for(60, 32)
    return dict(model=f"random Llama {width} wide, {layers} layers ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params)",
                device=str(batched.device), backend=backend_of(batched.device), dtype=str(batched.dtype), requests=n_req,
                concurrent_runs=n_runs, batched_s=round(t_batched, 3), one_at_a_time_s=round(t_single, 3),
                one_at_a_time_measured_on=n_single, speedup=round(t_single / t_batched, 2), requests_per_s=round(n_req / t_batched, 1),
                mean_batch=round(statistics.mean(sizes), 1), max_batch=max(sizes), generate_calls=len(sizes), memory_bound_batch=bound,
                identical_greedy_answers=f"{same}/{n_single}", peak_memory_mib=None if peak is None else round(peak, 1))

# --- 3. out of memory: the batch is halved, every caller still answered ----------------------------------------------
@section("oom_backoff")
def _():
    from dspy.lm15 import Config, Message, Request
    import dspyopt_nb.engines.torch_engine as te
    if not cuda: return dict(skipped="needs a GPU (an out-of-memory error is a CUDA allocator's)")
    model, tok = model_for_bench(1024, 8)
    eng = te.TorchEngine(model, tokenizer=tok, device="cuda", max_batch_size=256, batch_wait_ms=50)
    eng.complete(Request(model="m", messages=(Message.user("warm up"),), config=Config(max_tokens=4)))
    eng.max_batch_size_for = lambda *a, **k: 256            # an estimate that is far too hopeful
    free, total = torch.cuda.mem_get_info()
    used = torch.cuda.memory_allocated()
    torch.cuda.set_per_process_memory_fraction(min(0.99, (used + 1.5 * 2**30) / total))  # leave ~1.5 GiB for the batch
    words = [w for w in tok.get_vocab() if not w.startswith("<")]
    prompts = [" ".join(words[(i * 5 + j) % len(words)] for j in range(800)) for i in range(192)]
    eng.batch_sizes.clear()
    try:
        with ThreadPoolExecutor(192) as ex:
            res = list(ex.map(lambda p: eng.complete(Request(model="m", messages=(Message.user(p),), config=Config(max_tokens=64))), prompts))
    finally: torch.cuda.set_per_process_memory_fraction(1.0)
    sizes = list(eng.batch_sizes)
    return dict(requests=len(prompts), answered=sum(bool(r.message.text) or r.usage.output_tokens > 0 for r in res),
                generate_calls=len(sizes), batch_sizes=sizes[:40], split=len(sizes) > 1 and min(sizes) < max(sizes))

path = write_result("gpu" if not small else "gpu_cpu_check", out, a.out)
print(f"written to {path}")
