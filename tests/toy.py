"The shared toy model (dspyopt_nb.engines.scripted.toy_sentiment), logging each real call for tests across processes."
import hashlib, os

from dspyopt_nb.engines.scripted import toy_sentiment

def toy_model(prompt: str) -> str:
    "toy_sentiment, and one line per real call in $TOY_CALL_LOG: lets a test tell cache hits from LM calls across processes."
    log = os.environ.get("TOY_CALL_LOG")
    if log:
        with open(log, "a") as f: f.write(hashlib.sha256(prompt.encode()).hexdigest()[:16] + "\n")
    return toy_sentiment(prompt)
