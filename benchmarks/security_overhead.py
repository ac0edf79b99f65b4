"""The cost of security, side by side in one run: encryption + signing on save/load of a run's artifacts, and the auth
check + audit write + PII redaction on a request path.

Save/load (one finished run's artifacts: result.json with its program state and candidates, program.json, config.json):
- plain   : JSON written atomically and read back (the path before the security layer),
- secured : the same encrypted (AES-256-GCM envelope), signed (model-signing, ECDSA P-256) and verified + decrypted on load.
Per request (FastAPI in process, one DSPy program call per request, distinct inputs, the LM cache off):
- plain   : POST /predict -> program(review) -> answer,
- secured : the same behind auth.require("call") (token lookup, keyed-hash check, role check; a refusal or failed
            login would be audited, an allowed read-only call is not) with the input and the answer put through the PII
            policy (redact). The audit write a state-changing call adds is timed on its own (parts_ms.audit_write_ms).
The request path runs with the embedded model (`lm("local")`, the runtime's default engine; the goal, < 5 % on p50,
is judged there) and with a zero-latency scripted model (the machinery alone: the worst case). Requests come in
pairs (plain and secured, same input, back to back, alternating which goes first).
The store is SQLite (WAL) beside a temporary runs root.

    .venv/bin/python benchmarks/security_overhead.py [--requests 40] [--no-local]
"""
import argparse, gc, json, os, statistics, sys, tempfile, time
from pathlib import Path

_tmp = Path(tempfile.mkdtemp(prefix="dspyopt-secbench-"))
os.environ.update(DSPYOPT_RUNS=str(_tmp / "runs"), DSPYOPT_KEYS=str(_tmp / "keys"), DSPYOPT_NO_PROGRESS="1")
from _common import write_result

import dspy
from dspyopt_nb.data import load_task
from dspyopt_nb.run.catalogue import read_result, record_result
from dspyopt_nb.run.result import Candidate, OptimizationResult
from dspyopt_nb.security import auth, crypto
from dspyopt_nb.security.pii import PiiPolicy, find_pii

TASK = load_task("sst2")

def _result(program) -> OptimizationResult:
    return OptimizationResult(run_id="bench", optimizer="bootstrap", preset="light", seed=0, lm="local", program_state=program.dump_state(),
                              baseline_scores=[1.0] * 200, optimized_scores=[1.0] * 200, candidates=[Candidate(i, 0.5, 50, True) for i in range(40)],
                              config=dict(task="sst2"), data=dict(n_train=50))

def save_load(rounds: int, reps: int) -> dict:
    sp = TASK.splits(n_train=16, n_val=4, n_test=4, seed=0)
    prog = TASK.program()
    for _, p in prog.named_predictors(): p.demos = sp.train[:16]   # a program with 16 demos: the usual size
    res = _result(prog)
    plain_dir, sec_dir = _tmp / "plain" / "bootstrap-bench", _tmp / "secured" / "bootstrap-bench"
    for d in (plain_dir, sec_dir): d.mkdir(parents=True); (d / "config.json").write_text(json.dumps(res.config))
    def plain():
        t0 = time.perf_counter()
        os.environ.pop("DSPYOPT_ENCRYPT", None)
        res.save(plain_dir / "result.json"); (plain_dir / "program.json").write_text(json.dumps(prog.dump_state()))
        t1 = time.perf_counter()
        OptimizationResult.load(plain_dir / "result.json")
        return t1 - t0, time.perf_counter() - t1
    def secured():
        os.environ["DSPYOPT_ENCRYPT"] = "1"
        t0 = time.perf_counter(); record_result(sec_dir, res, prog); t1 = time.perf_counter()
        read_result(sec_dir, verify="strict"); t2 = time.perf_counter()
        os.environ.pop("DSPYOPT_ENCRYPT", None)
        return t1 - t0, t2 - t1
    secured(); plain()  # warm up: imports, key creation
    out = {"plain": {"save": [], "load": []}, "secured": {"save": [], "load": []}}
    for r in range(rounds):
        for name, fn in ((("plain", plain), ("secured", secured)) if r % 2 == 0 else (("secured", secured), ("plain", plain))):
            for _ in range(reps):
                gc.collect(); s, l = fn(); out[name]["save"].append(s); out[name]["load"].append(l)
    med = {k: {op: round(1000 * statistics.median(v), 3) for op, v in ops.items()} for k, ops in out.items()}
    size = sum(p.stat().st_size for p in plain_dir.iterdir())
    return dict(artifact_bytes=size, ms_median=med, added_ms=dict(save=round(med["secured"]["save"] - med["plain"]["save"], 3),
                load=round(med["secured"]["load"] - med["plain"]["load"], 3)))

def _apps(lm, url: str, policy: PiiPolicy):
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient
    from dspyopt_nb.engines.adapter import AutoAdapter
    prog = TASK.program()
    def answer(review: str) -> str:
        with dspy.context(lm=lm, adapter=AutoAdapter()): return str(prog(review=review).sentiment)
    plain, secured = FastAPI(), FastAPI()
    @plain.post("/predict")
    def p(body: dict): return {"sentiment": answer(body["review"])}
    @secured.post("/predict")
    def s(body: dict, who: auth.Identity = Depends(auth.require("call", url=url))):
        review = policy.apply(body["review"], "the request")
        return {"sentiment": policy.apply(answer(review), "the answer")}
    return TestClient(plain), TestClient(secured)

def _ci(xs, stat=statistics.median, n=2000) -> list:
    "A 95 % percentile-bootstrap interval of `stat` over `xs` (seeded)."
    import random
    rng = random.Random(0)
    boots = sorted(stat([rng.choice(xs) for _ in xs]) for _ in range(n))
    return [round(boots[int(0.025 * n)], 3), round(boots[int(0.975 * n)], 3)]

def requests(lm, n: int, label: str) -> dict:
    """`n` pairs of requests, one plain and one secured with the same input, back to back in alternating order: the
    machine's load, which drifts over minutes on a shared machine, hits both sides of a pair alike."""
    url = f"sqlite:///{_tmp}/runs/dspyopt.db"
    auth.add_identity("bench-client", "viewer", url=url)
    token = auth.issue_token("bench-client", days=1, url=url)
    policy = PiiPolicy("redact")
    plain, secured = _apps(lm, url, policy)
    H = {"Authorization": f"Bearer {token}"}
    texts = [e.review for e in TASK.splits(n_train=2, n_val=2, n_test=400, seed=1).test]
    texts = [t + (" contact me at pat.doe@example.com" if i % 4 == 0 else "") for i, t in enumerate(texts)]
    def call(client, headers, t):
        t0 = time.perf_counter(); r = client.post("/predict", json={"review": t}, headers=headers); dt = time.perf_counter() - t0
        assert r.status_code == 200, r.text
        return dt
    for i in range(2): call(plain, {}, f"warm up {i}"); call(secured, H, f"warm up {i}")   # model load, imports, store
    lat = {"plain": [], "secured": []}
    for i in range(n):
        t = texts[i % len(texts)] + f" #{i}"                        # distinct inputs: no cache hit anywhere
        gc.collect()
        pair = ((("plain", plain, {}), ("secured", secured, H)) if i % 2 == 0 else (("secured", secured, H), ("plain", plain, {})))
        for name, c, h in pair: lat[name].append(call(c, h, t))
    ms = {k_: [1000 * x for x in v] for k_, v in lat.items()}
    p50 = {k_: statistics.median(v) for k_, v in ms.items()}
    diff = [s_ - p_ for s_, p_ in zip(ms["secured"], ms["plain"])]
    parts = {}  # the parts, each timed alone
    t0 = time.perf_counter(); [auth.authenticate(token, url=url) for _ in range(50)]; parts["authenticate_ms"] = 1000 * (time.perf_counter() - t0) / 50
    from dspyopt_nb.security.audit import record
    t0 = time.perf_counter(); [record("call", "allowed", actor="bench", url=url) for _ in range(50)]; parts["audit_write_ms"] = 1000 * (time.perf_counter() - t0) / 50
    t0 = time.perf_counter(); [policy.apply(t, "x") for t in texts[:100]]; parts["redact_input_ms"] = 1000 * (time.perf_counter() - t0) / 100
    return dict(lm=label, pairs=n, p50_ms={k_: round(v, 3) for k_, v in p50.items()},
                p90_ms={k_: round(statistics.quantiles(v, n=10)[-1], 3) for k_, v in ms.items()},
                p50_ratio=round(p50["secured"] / p50["plain"], 4),
                paired_added_ms=dict(median=round(statistics.median(diff), 3), ci95=_ci(diff)),
                parts_ms={k_: round(v, 3) for k_, v in parts.items()}, load_avg_1m=round(os.getloadavg()[0], 2))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=40, help="pairs of requests per model")
    ap.add_argument("--rounds", type=int, default=3, help="save/load rounds"); ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-local", action="store_true")
    a = ap.parse_args()
    os.environ["DSPYOPT_KEK"] = crypto.LocalKey.generate().to_b64()
    find_pii("warm up a@example.com")
    out = dict(save_load=save_load(a.rounds, a.reps))
    print("save/load ms (median):", out["save_load"]["ms_median"], "added:", out["save_load"]["added_ms"])
    from dspyopt_nb.engines.scripted import scripted_lm, toy_sentiment
    out["request_scripted"] = requests(scripted_lm(toy_sentiment, cache=False), 4 * a.requests, "scripted (zero latency)")
    print("request, scripted:", out["request_scripted"])
    if not a.no_local:
        from dspyopt_nb.engines.lm import lm
        out["request_local"] = r = requests(lm("local", cache=False, max_tokens=8), a.requests, "local (embedded Gemma 3 270M)")
        print("request, local:", r)
        # The goal (< 5 % on the runtime's p50) two ways: the machinery's added time (measured with the zero-latency
        # model, where nothing else varies) over the embedded model's p50; and the direct paired difference on the
        # embedded model, whose interval says how much the machine's noise allows one to conclude.
        machinery = out["request_scripted"]["paired_added_ms"]["median"] / r["p50_ms"]["plain"]
        direct = [x / r["p50_ms"]["plain"] for x in r["paired_added_ms"]["ci95"]]
        out["goal"] = dict(p50_overhead_below=0.05, machinery_share_of_p50=round(machinery, 4),
                           direct_paired_share_ci95=[round(x, 4) for x in direct], met=machinery < 0.05,
                           note="met is judged on the machinery share; the direct interval is reported beside it")
        print("goal:", out["goal"])
    print(write_result("security_overhead", out))

if __name__ == "__main__": main()
