"Experiment statistics by simulation: A/A under continuous peeking, power at the planned effect, SRM, and salted-hash assignment."
import math
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dspyopt_nb.sequential import ArmSummary, sequential_design, sequential_test, simulate_rejections
from dspyopt_nb.serve.experiments import ExperimentSpec, Variant, assign, bucket, stage_weights
from dspyopt_nb.sequential import srm_check

ALPHA = 0.05

@pytest.fixture(scope="module")
def design():
    return sequential_design(0.05, p_base=0.5, alpha=ALPHA, power=0.8, n_min=50)

def test_aa_with_continuous_peeking_keeps_the_false_positive_rate(design):
    # 4,000 A/A experiments, each read after every observation up to the planned horizon
    fpr = simulate_rejections(design, 0.5, 0.5, n_sims=4000, seed=11)
    assert abs(fpr - ALPHA) <= 0.01, fpr

def test_peeking_at_a_fixed_horizon_test_would_not(design):
    # the same data read with a plain z-test at every look: far above alpha (what the sequential test prevents)
    rng, n, hits = np.random.default_rng(5), design.n_per_arm, 0
    k = np.arange(1, n + 1)
    a, b = np.cumsum(rng.random((1000, n)) < 0.5, 1) / k, np.cumsum(rng.random((1000, n)) < 0.5, 1) / k
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (b - a) / np.sqrt((a * (1 - a) + b * (1 - b)) / k)
    assert (np.abs(z[:, 49:]) > 1.96).any(1).mean() > 2 * ALPHA

def test_power_at_the_planned_effect(design):
    power = simulate_rejections(design, 0.5, 0.55, n_sims=3000, seed=12)
    assert abs(power - 0.8) <= 0.03, power

def test_srm_is_detected_at_the_designed_imbalance():
    rng = np.random.default_rng(3)
    # a 50/50 split losing 10 % of the treatment's exposures (a logging bug) over 10,000 units
    caught = 0
    for _ in range(200):
        a = rng.binomial(10_000, 0.5)
        b = rng.binomial(10_000 - a, 0.90)
        caught += srm_check([a, b], [0.5, 0.5]).mismatch
    assert caught / 200 > 0.95
    clean = sum(srm_check([a := rng.binomial(10_000, 0.5), 10_000 - a], [0.5, 0.5]).mismatch for _ in range(500))
    assert clean / 500 < 0.01

def test_sequential_read_out_is_significant_for_a_large_effect(design):
    rng = np.random.default_rng(0)
    r = sequential_test(ArmSummary.of(rng.binomial(1, 0.5, 800)), ArmSummary.of(rng.binomial(1, 0.65, 800)), design)
    assert r.significant and r.ci[0] > 0

SPEC = ExperimentSpec(name="prop", program="p", variants=[Variant(name="a"), Variant(name="b"), Variant(name="c")], unit="user",
                      stages=[0.3], p_base=0.5, mde=0.1)

@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), st.floats(0.01, 0.99))
def test_assignment_is_sticky_and_ramps_only_move_into_treatment(unit, share):
    w1 = {"b": share / 2, "c": share / 2, "a": 1 - share}
    assert assign(SPEC, w1, unit) == assign(SPEC, w1, unit)
    bigger = min(0.99, share + 0.2)
    w2 = {"b": bigger / 2, "c": bigger / 2, "a": 1 - bigger}
    if assign(SPEC, w1, unit) != "a": assert assign(SPEC, w2, unit) != "a"

@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.05, 1.0), min_size=2, max_size=4), st.integers(0, 10 ** 6))
def test_assignment_is_balanced(weights, seed):
    names = [f"v{i}" for i in range(len(weights))]
    spec = ExperimentSpec(name=f"bal{seed}", program="p", variants=[Variant(name=n) for n in names], p_base=0.5)
    total = sum(weights)
    w = {n: x / total for n, x in zip(names, weights)}
    units = [f"{seed}-{i}" for i in range(4000)]
    got = [assign(spec, w, u) for u in units]
    counts = [got.count(n) for n in names]
    assert not srm_check(counts, [w[n] for n in names]).mismatch

def test_assignments_are_independent_across_experiments():
    from scipy.stats import chi2_contingency
    units = [f"user-{i}" for i in range(20_000)]
    x = [bucket("exp-one", u) < 0.5 for u in units]
    y = [bucket("exp-two", u) < 0.5 for u in units]
    table = [[sum(1 for a, b in zip(x, y) if a and b), sum(1 for a, b in zip(x, y) if a and not b)],
             [sum(1 for a, b in zip(x, y) if not a and b), sum(1 for a, b in zip(x, y) if not a and not b)]]
    assert chi2_contingency(table)[1] > 0.001

def test_holdout_is_independent_of_the_split():
    spec = SPEC.model_copy(update=dict(holdout=0.1, name="hold"))
    w = stage_weights(spec, 0)
    got = [assign(spec, w, f"u{i}") for i in range(20_000)]
    assert abs(got.count("holdout") / len(got) - 0.1) < 0.01
    rest = [g for g in got if g != "holdout"]
    assert abs(sum(g != "a" for g in rest) / len(rest) - 0.3) < 0.015
