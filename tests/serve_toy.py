"Scripted models for the serving tests: a zero-shot program answers 'positive'; with demos it knows SST-2's labels."
import json
from pathlib import Path
from dspyopt_nb.data import DATA_DIR

_LABELS = None

def labels() -> dict:
    global _LABELS
    if _LABELS is None:
        _LABELS = {}
        for line in open(Path(DATA_DIR) / "sst2" / "dev.jsonl"):
            r = json.loads(line); _LABELS[r["text"].strip()] = r["label"]
    return _LABELS

def oracle(prompt: str) -> str:
    "'positive' zero-shot; with two or more demos in the prompt, the review's true label."
    query = prompt.rsplit("\n\n", 1)[-1]
    if not query.endswith("Sentiment:"): return " Decide whether the review is positive or negative."
    if prompt.count("Sentiment:") < 3: return " positive"
    review = query.split("Review:", 1)[-1].rsplit("Sentiment:", 1)[0].strip()
    return " " + labels().get(review, "positive")
