"""PII detection: recall and precision per type on the labelled set tests/data/pii_set.jsonl (goal: recall >= 0.95 on the
structured types), and the time to scan one text. Span-level: a found span counts when it overlaps a labelled span of
the same type (recall) and a labelled span of the same type overlaps it (precision).

    python benchmarks/pii.py            # writes benchmarks/results/pii.json
"""
import json, statistics, sys, time
from collections import Counter
from pathlib import Path

from _common import ROOT, write_result
from dspyopt_nb.security.pii import STRUCTURED, find_pii

def overlaps(a, b) -> bool: return a["start"] < b["end"] and b["start"] < a["end"]

def main():
    rows = [json.loads(l) for l in (ROOT / "tests" / "data" / "pii_set.jsonl").read_text().splitlines() if l.strip()]
    find_pii("warm up a@example.com")
    tp, fn, fp, found_n, times, misses = Counter(), Counter(), Counter(), Counter(), [], []
    for r in rows:
        t0 = time.perf_counter(); found = [dict(start=s.start, end=s.end, type=s.type) for s in find_pii(r["text"])]; times.append(time.perf_counter() - t0)
        for g in r["spans"]:
            if any(f["type"] == g["type"] and overlaps(f, g) for f in found): tp[g["type"]] += 1
            else: fn[g["type"]] += 1; misses.append(dict(type=g["type"], text=r["text"][g["start"]:g["end"]]))
        for f in found:
            found_n[f["type"]] += 1
            if not any(g["type"] == f["type"] and overlaps(f, g) for g in r["spans"]): fp[f["type"]] += 1
    types = sorted(set(tp) | set(fn) | set(found_n))
    per = {t: dict(labelled=tp[t] + fn[t], found=found_n[t], recall=round(tp[t] / (tp[t] + fn[t]), 4) if tp[t] + fn[t] else None,
                   precision=round((found_n[t] - fp[t]) / found_n[t], 4) if found_n[t] else None) for t in types}
    s_tp = sum(tp[t] for t in STRUCTURED); s_fn = sum(fn[t] for t in STRUCTURED)
    s_found = sum(found_n[t] for t in STRUCTURED); s_fp = sum(fp[t] for t in STRUCTURED)
    out = dict(texts=len(rows), spans=sum(len(r["spans"]) for r in rows), per_type=per,
               structured=dict(recall=round(s_tp / (s_tp + s_fn), 4), precision=round((s_found - s_fp) / s_found, 4) if s_found else None,
                               goal_recall=0.95),
               scan_ms_per_text=dict(p50=round(1000 * statistics.median(times), 3), mean=round(1000 * statistics.mean(times), 3)),
               misses=misses[:40],
               note="PERSON needs an NER model; none is available offline, so names are not detected (recall 0 by design).")
    for t in types: print(f"{t:14s} labelled {per[t]['labelled']:3d}  recall {per[t]['recall']}  precision {per[t]['precision']}")
    print(f"structured: recall {out['structured']['recall']}, precision {out['structured']['precision']}; scan p50 {out['scan_ms_per_text']['p50']} ms/text")
    print(write_result("pii", out))

if __name__ == "__main__": main()
