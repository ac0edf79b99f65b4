"""Load test of the serving runtime on loopback, SQLite and PostgreSQL side by side in one run.

A server (`dspyopt serve`, one uvicorn process) serves SST-2's program answered by a scripted model with a fixed
latency; a load generator in another process (raw asyncio HTTP/1.1 on keep-alive connections, uvloop) drives it with
1,000 concurrent connections. Both share this machine's cores. For each store:

- saturation: every connection sends predictions back to back (feedback for a share of them) for `--seconds`;
  requests per second is the predictions answered per second;
- added latency: predictions at 60 % of that rate, open loop (latency counted from the scheduled send time, so queueing
  in the generator counts too), against the same program called in-process with the same model: p50 and p99 of
  HTTP minus in-process;
- lost feedback: every feedback the server acknowledged (200) is looked up in the store afterwards.

Goals (issue 12): saturation >= 500 requests/s, added p99 <= 10 ms at 60 % of saturation, lost feedback = 0.

    .venv/bin/python benchmarks/serve_load.py [--seconds 15] [--latency-ms 20] [--connections 1000] [--stores sqlite,postgres]
"""
import argparse, asyncio, json, os, random, resource, signal, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from _common import ROOT, write_result

def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

REVIEWS = None
def reviews():
    global REVIEWS
    if REVIEWS is None:
        REVIEWS = [json.loads(l)["text"] for l in open(ROOT / "dspyopt_nb" / "data" / "sst2" / "dev.jsonl")][:500]
    return REVIEWS

def _request(path: str, body: dict) -> bytes:
    b = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b

async def _response(reader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    n = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:": n = int(line[15:])
    return status, await reader.readexactly(n)

class Load:
    "1,000 keep-alive connections; closed loop (saturation) or fed by an open-loop schedule."
    def __init__(self, port: int, connections: int, feedback_share: float, seed: int = 0):
        self.port, self.connections, self.feedback_share = port, connections, feedback_share
        self.rng = random.Random(seed)
        self.lat, self.errors, self.done, self.acked, self.fb_errors = [], 0, 0, [], 0

    async def _call(self, reader, writer, unit: int, t_sched: float | None):
        t0 = t_sched if t_sched is not None else time.perf_counter()
        writer.write(_request("/v1/programs/sst2/predict", {"inputs": {"review": self.rng.choice(reviews())}, "unit": f"u{unit}"}))
        status, body = await _response(reader)
        t1 = time.perf_counter()
        if status != 200: self.errors += 1; return
        self.done += 1; self.lat.append((t1 - t0) * 1000)
        if self.rng.random() < self.feedback_share:
            rid = json.loads(body)["request_id"]
            writer.write(_request("/v1/feedback", {"request_id": rid, "score": 1.0}))
            st, _ = await _response(reader)
            if st == 200: self.acked.append(rid)
            else: self.fb_errors += 1

    async def _conn(self, i, until, queue):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2 ** 20)
        try:
            while time.perf_counter() < until:
                if queue is None: await self._call(reader, writer, self.rng.randrange(10 ** 6), None)
                else:
                    t = await queue.get()
                    if t is None: break
                    await self._call(reader, writer, self.rng.randrange(10 ** 6), t)
        finally: writer.close()

    async def run(self, seconds: float, rate: float | None = None):
        until = time.perf_counter() + seconds
        queue = asyncio.Queue() if rate else None
        tasks = [asyncio.create_task(self._conn(i, until + (5 if rate else 0), queue)) for i in range(self.connections)]
        if rate:
            start, k = time.perf_counter(), 0
            while (now := time.perf_counter()) < until:
                due = start + k / rate
                if due > now: await asyncio.sleep(due - now)
                queue.put_nowait(due); k += 1
            for _ in tasks: queue.put_nowait(None)
        await asyncio.gather(*tasks, return_exceptions=True)

def drive(port, connections, seconds, rate, feedback_share, warmup=3.0) -> Load:
    try: import uvloop; uvloop.install()
    except ImportError: pass
    asyncio.run(Load(port, connections, feedback_share).run(warmup, rate))   # warm up: connections, threads, caches
    load = Load(port, connections, feedback_share, seed=1)
    t0 = time.perf_counter()
    asyncio.run(load.run(seconds, rate))
    load.wall = time.perf_counter() - t0
    return load

def in_process(latency_ms: float, n: int = 300) -> list[float]:
    "The same program and model called directly, one call at a time: ms per call."
    import dspy
    from dspyopt_nb.data import load_task
    from dspyopt_nb.engines.adapter import AutoAdapter
    from dspyopt_nb.serve.cli import _lm
    prog, lm = load_task("sst2").program(), _lm("scripted:dspyopt_nb.engines.scripted:toy_sentiment", latency_ms)
    out = []
    with dspy.context(lm=lm, adapter=AutoAdapter()):
        for i in range(n):
            t0 = time.perf_counter(); prog(review=random.choice(reviews())); out.append((time.perf_counter() - t0) * 1000)
    return out

def serve(url: str, latency_ms: float, port: int, folder: Path):
    ready = folder / f"ready-{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DSPYOPT_RUNS": str(folder / "runs"), "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    cmd = [sys.executable, "-c", "import sys; from dspyopt_nb.cli import main; sys.exit(main(sys.argv[1:]))", "serve", "--port", str(port),
           "--db", url, "--lm", "scripted:dspyopt_nb.engines.scripted:toy_sentiment", "--lm-latency-ms", str(latency_ms),
           "--program", "sst2=task:sst2", "--no-rollout", "--ready-file", str(ready)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(folder / f"server-{port}.log", "w"))
    deadline = time.time() + 120
    while not ready.exists():
        if p.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the server did not start: {(folder / f'server-{port}.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return p

def stored(url: str, ids: list[str]) -> int:
    from sqlalchemy import text
    from dspyopt_nb.store.db import get_engine
    n = 0
    with get_engine(url).connect() as c:
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            n += c.execute(text("select count(distinct request_id) from runtime_feedback where request_id in :ids")
                           .bindparams(__import__("sqlalchemy").bindparam("ids", expanding=True)), dict(ids=chunk)).scalar()
    return n

def measure(store: str, url: str, a, folder: Path, inproc: list[float]) -> dict:
    from dspyopt_nb.store.db import migrate
    migrate(url)
    port = 18000 + random.randrange(1000)
    server = serve(url, a.latency_ms, port, folder)
    try:
        sat = drive(port, a.connections, a.seconds, None, a.feedback_share)
        rps = sat.done / sat.wall
        rate = 0.6 * rps
        fixed = drive(port, a.connections, a.seconds, rate, a.feedback_share)
    finally:
        server.send_signal(signal.SIGTERM)
        try: server.wait(60)
        except subprocess.TimeoutExpired: server.kill()
    acked = sat.acked + fixed.acked
    kept = stored(url, acked)
    ip50, ip99 = _pct(inproc, 0.5), _pct(inproc, 0.99)
    return dict(store=store, saturation_rps=round(rps, 1), saturation_errors=sat.errors, saturation_p50_ms=round(_pct(sat.lat, .5), 2),
                saturation_p99_ms=round(_pct(sat.lat, .99), 2), fixed_rate_rps=round(rate, 1), fixed_rate_achieved_rps=round(fixed.done / a.seconds, 1),
                fixed_rate_errors=fixed.errors, http_p50_ms=round(_pct(fixed.lat, .5), 2), http_p99_ms=round(_pct(fixed.lat, .99), 2),
                inprocess_p50_ms=round(ip50, 2), inprocess_p99_ms=round(ip99, 2),
                added_p50_ms=round(_pct(fixed.lat, .5) - ip50, 2), added_p99_ms=round(_pct(fixed.lat, .99) - ip99, 2),
                feedback_acked=len(acked), feedback_stored=kept, lost_feedback=len(acked) - kept, feedback_errors=sat.fb_errors + fixed.fb_errors)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15); ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--connections", type=int, default=1000); ap.add_argument("--feedback-share", type=float, default=0.5)
    ap.add_argument("--stores", default="sqlite,postgres"); ap.add_argument("--out")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    folder = Path(tempfile.mkdtemp(prefix="dspyopt-serve-load-"))
    inproc = in_process(a.latency_ms)
    rows = []
    for store in a.stores.split(","):
        if store == "sqlite": rows.append(measure(store, f"sqlite:///{folder}/store.db", a, folder, inproc))
        elif store == "postgres":
            from dspyopt_nb.store.postgres import local_postgres
            with local_postgres() as url: rows.append(measure(store, url, a, folder, inproc))   # its own temp folder: postgres cannot enter ours (0700)
        print(json.dumps(rows[-1]), flush=True)
    goals = dict(saturation_rps=500, added_p99_ms=10, lost_feedback=0)
    met = {r["store"]: dict(saturation=r["saturation_rps"] >= 500, added_p99=r["added_p99_ms"] <= 10, lost_feedback=r["lost_feedback"] == 0) for r in rows}
    print(f"{'store':9} {'sat rps':>8} {'p99@60%':>8} {'inproc p99':>10} {'added p50':>9} {'added p99':>9} {'lost fb':>7}")
    for r in rows:
        print(f"{r['store']:9} {r['saturation_rps']:8.0f} {r['http_p99_ms']:8.1f} {r['inprocess_p99_ms']:10.1f} {r['added_p50_ms']:9.1f} "
              f"{r['added_p99_ms']:9.1f} {r['lost_feedback']:7d}")
    path = write_result("serve_load", dict(settings=vars(a), goals=goals, met=met, rows=rows), a.out)
    print(f"written {path}")

if __name__ == "__main__": main()
