"Scripted models for the panel's tests, importable by a Jupyter server started with tests/ on its path."
import time

from dspyopt_nb.engines.scripted import toy_sentiment

def slow_sentiment(prompt: str) -> str:
    "toy_sentiment at 50 ms a call: a run that lasts long enough to be watched and stopped."
    time.sleep(0.05)
    return toy_sentiment(prompt)

def steady_sentiment(prompt: str) -> str:
    "toy_sentiment at 10 ms a call: a run whose progress is seen advancing, yet ends in seconds."
    time.sleep(0.01)
    return toy_sentiment(prompt)
