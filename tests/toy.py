"A scripted stand-in for a base model, shared by tests (and the kill/resume subprocess)."
import hashlib, os

NEG = ("bad", "dull", "worst", "n't", "boring", "mess", "fails", "unfunny", "lack", "tired", "flat", "no ", "never", "without")

def toy_model(prompt: str) -> str:
    "Answers 'positive' zero-shot; with >= 2 demos in the prompt, looks for negative words."
    log = os.environ.get("TOY_CALL_LOG")
    if log:  # one line per real call: lets a test tell cache hits from LM calls across processes
        with open(log, "a") as f: f.write(hashlib.sha256(prompt.encode()).hexdigest()[:16] + "\n")
    query = prompt.rsplit("\n\n", 1)[-1]
    if not query.endswith("Sentiment:"): return " Decide whether the movie review is positive or negative."
    if prompt.count("Sentiment:") < 3: return " positive"
    return " negative" if any(w in query.lower() for w in NEG) else " positive"
