"""GPU check of the torch engine's batching (run on a machine with CUDA; works on CPU too).

The embedded GGUF (253 MB) cannot travel to a lent GPU machine, so this check uses a random small Llama built in
memory (`tiny_model`, widened here so the GPU has real work): it shows the device picked, the free-memory bound on
the batch size, that 64 concurrent requests from 8 threads are micro-batched into few `generate` calls, and that
batched answers equal one-at-a-time answers on that device, with both timings.

    python benchmarks/gpu_check.py [--n 64] [--threads 8]
"""
import argparse, json, time
from concurrent.futures import ThreadPoolExecutor
import dspy, torch
from dspy.lm15 import Config, Message, Request
from dspyopt_nb.engines.torch_engine import TorchEngine, tiny_model

ap = argparse.ArgumentParser(); ap.add_argument("--n", type=int, default=64); ap.add_argument("--threads", type=int, default=8)
a = ap.parse_args()
model, tok = tiny_model(0)
words = list(tok.get_vocab())
prompts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(20 + i % 9)) for i in range(a.n)]
reqs = [Request(model="tiny", messages=(Message.user(p),), config=Config(max_tokens=16, temperature=0.0)) for p in prompts]

batched = TorchEngine(model, tokenizer=tok, device="auto", max_batch_size=None, batch_wait_ms=10)
info = batched.device_info()
print("device:", json.dumps(info, default=str))
print("batch bound for 30 prompt + 16 new tokens:", batched.max_batch_size_for(30, 16))
batched.complete(reqs[0])  # warm up (CUDA context, kernels)
t = time.perf_counter()
with ThreadPoolExecutor(a.threads) as ex: outs_b = list(ex.map(lambda r: batched.complete(r).message.text, reqs))
tb = time.perf_counter() - t
sizes = list(batched.batch_sizes)[1:]
single = TorchEngine(model, tokenizer=tok, device="auto", max_batch_size=1)
single.complete(reqs[0])
t = time.perf_counter()
outs_s = [single.complete(r).message.text for r in reqs]
ts = time.perf_counter() - t
same = sum(x == y for x, y in zip(outs_b, outs_s))
print(f"{a.n} requests from {a.threads} threads: {tb:.2f} s batched (batch sizes {sizes}), {ts:.2f} s one at a time "
      f"-> speed-up {ts / tb:.2f}x; identical answers {same}/{a.n}")
L = dspy.LM("torch/tiny", engine=batched, cache=False)
print("through dspy.LM:", L(prompts[0], max_tokens=8)[0][:60])
if torch.cuda.is_available(): print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
assert same == a.n, "batched answers differ from one-at-a-time answers"
