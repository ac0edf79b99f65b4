"Greedy forward selection of few-shot demos: an example dspyopt optimizer plugin, found through its entry point."
from __future__ import annotations
import random

from dspyopt_nb.run.errors import OptimizeError

__all__ = ["GreedyDemos", "GREEDY"]


class GreedyDemos:
    "Add the training example that helps most on a validation minibatch as the next demo, `max_demos` times."
    name = "greedy"
    feedback = False
    description = "Greedy forward selection of few-shot demos, scored on a validation minibatch."
    presets = {"light": dict(max_demos=4, candidates_per_step=4, minibatch_size=16),
               "medium": dict(max_demos=6, candidates_per_step=6, minibatch_size=24),
               "heavy": dict(max_demos=8, candidates_per_step=8, minibatch_size=32)}

    def check(self, knobs: dict) -> None:
        for k in ("max_demos", "candidates_per_step", "minibatch_size"):
            v = knobs.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "max_demos" else 1):
                raise OptimizeError(f"greedy knob {k}={v!r}. Fix: a whole number, {'0' if k == 'max_demos' else '1'} or more.")

    def estimate(self, knobs: dict, n_train: int, n_val: int) -> int:
        mb = min(knobs["minibatch_size"], n_val)
        return knobs["max_demos"] * knobs["candidates_per_step"] * mb + n_val

    def compile(self, ctx):
        import dspy
        k, rng = ctx.knobs, random.Random(ctx.seed)
        program = ctx.program.deepcopy()
        preds = [p for _, p in program.named_predictors()]
        batch = rng.sample(range(len(ctx.valset)), min(k["minibatch_size"], len(ctx.valset)))

        def score(prog, idx):
            total = 0.0
            for i in idx:
                ex = ctx.valset[i]
                try: pred = prog(**ex.inputs())
                except Exception: continue  # a failed call scores 0 (the run records LM errors itself)
                total += ctx.metric(ex, pred)
            return total / max(1, len(idx))

        best = score(program, batch)
        for _ in range(k["max_demos"]):
            ctx.recorder.check()
            options = rng.sample(ctx.trainset, min(k["candidates_per_step"], len(ctx.trainset)))
            scored = []
            for ex in options:
                trial = program.deepcopy()
                for p in trial.named_predictors(): p[1].demos = p[1].demos + [ex]
                ctx.recorder.trial_started()
                s = score(trial, batch)
                ctx.recorder.report_candidate(trial, len(batch), s)
                scored.append((s, trial))
            top, trial = max(scored, key=lambda t: t[0])
            if top < best: break
            best, program = top, trial
        full = score(program, range(len(ctx.valset)))
        ctx.recorder.report_candidate(program, len(ctx.valset), full)
        return program


GREEDY = GreedyDemos()
