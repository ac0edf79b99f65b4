"""dspyopt_nb.stats against scipy/statsmodels references, its error messages, an A/A false-positive check, and the
torch bootstrap against scipy.stats.bootstrap. The lesson (nbs/04_stats.ipynb) shows each function; these are the
checks that do not fit there."""
import json, math, warnings

import numpy as np
import pytest
import scipy.stats as sps
import statsmodels.api as sm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from dspyopt_nb.gpu_stats import torch_paired_bootstrap
from dspyopt_nb.sequential import chance_to_win, confidence_sequence, srm_check
from dspyopt_nb.stats import (
    PairedComparison, UnderpoweredWarning, aa_false_positive_rate, adjust_pvalues, clustered_diff, compare_paired,
    mcnemar_exact, min_detectable_effect, paired_bootstrap_ci, paired_t, permutation_test, relative_lift,
    required_sample_size, wilcoxon)

# Small samples below are deliberate; the warning itself is tested in test_compare_paired_warns_when_underpowered.
pytestmark = pytest.mark.filterwarnings("ignore::dspyopt_nb.stats.UnderpoweredWarning")


@pytest.fixture
def binary_pair():
    rng = np.random.default_rng(10)
    a = rng.binomial(1, 0.6, 300)
    b = np.where(rng.random(300) < 0.85, a, rng.binomial(1, 0.75, 300))  # correlated, slightly better
    return a.astype(float), b.astype(float)


@pytest.fixture
def continuous_pair():
    rng = np.random.default_rng(11)
    a = rng.beta(4, 3, 250)
    return a, np.clip(a + rng.normal(0.02, 0.1, 250), 0, 1)


# --- references ---------------------------------------------------------------------------------------------------

def test_mcnemar_matches_statsmodels_and_binomial(binary_pair):
    a, b = binary_pair
    n01, n10 = int(np.sum((a == 0) & (b == 1))), int(np.sum((a == 1) & (b == 0)))
    table = [[np.sum((a == 1) & (b == 1)), n10], [n01, np.sum((a == 0) & (b == 0))]]
    res = mcnemar_exact(a, b)
    assert res.p_value == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert res.p_value == pytest.approx(sps.binomtest(n01, n01 + n10).pvalue)
    assert res.estimate == pytest.approx((n01 - n10) / len(a))


def test_bootstrap_ci_matches_scipy_two_sample_paired(continuous_pair):
    # scipy resampling the (a, b) pairs with paired=True is the textbook form; ours resamples the differences.
    a, b = continuous_pair
    ours = paired_bootstrap_ci(a, b, n_resamples=20_000, seed=1)
    ref = sps.bootstrap((a, b), lambda x, y, axis: np.mean(y - x, axis=axis), paired=True, n_resamples=20_000,
                        method="BCa", rng=np.random.default_rng(2)).confidence_interval
    se = np.std(b - a, ddof=1) / math.sqrt(len(a))
    assert ours == pytest.approx((ref.low, ref.high), abs=0.1 * se)
    assert ours[0] < np.mean(b - a) < ours[1]


def test_bootstrap_ci_is_close_to_t_interval_for_large_n(continuous_pair):
    a, b = continuous_pair
    ci, t = paired_bootstrap_ci(a, b), paired_t(a, b)
    assert ci == pytest.approx(t.ci, abs=0.15 * t.se)


def test_permutation_exact_matches_scipy_two_sample_form():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=10), rng.normal(0.5, 1, 10)  # 2^10 sign patterns < n_resamples: exact enumeration
    ref = sps.permutation_test((a, b), lambda x, y, axis: np.mean(y - x, axis=axis), permutation_type="samples",
                               n_resamples=10_000)
    assert permutation_test(a, b).p_value == pytest.approx(ref.pvalue)


def test_wilcoxon_and_paired_t_match_scipy(continuous_pair):
    a, b = continuous_pair
    assert wilcoxon(a, b).p_value == pytest.approx(sps.wilcoxon(b - a).pvalue)
    t = paired_t(a, b)
    ref = sps.ttest_rel(b, a)
    assert (t.statistic, t.p_value) == pytest.approx((ref.statistic, ref.pvalue))


def test_clustered_se_matches_cr1_formula():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(15), 6)
    a = rng.uniform(0, 1, 90)
    b = a + 0.05 + rng.normal(0, 0.1, 15)[g] + rng.normal(0, 0.05, 90)
    res = clustered_diff(a, b, g)
    d = b - a
    n, G = len(d), 15
    e = d - d.mean()
    cluster_sums = np.bincount(g, weights=e)
    se_cr1 = math.sqrt(G / (G - 1) * (n - 1) / (n - 1) * np.sum(cluster_sums ** 2) / n ** 2)
    assert res.se == pytest.approx(se_cr1, rel=1e-6)
    assert res.p_value == pytest.approx(2 * sps.t.sf(abs(d.mean() / se_cr1), G - 1), rel=1e-6)


def test_adjust_pvalues_match_multipletests():
    p = [0.001, 0.01, 0.02, 0.04, 0.3, 0.5]
    for method in ("holm", "fdr_bh"):
        res = adjust_pvalues(p, method)
        ref = multipletests(p, method=method)
        np.testing.assert_allclose(res.p_adjusted, ref[1])
        np.testing.assert_array_equal(res.reject, ref[0])


def test_required_sample_size_gives_the_promised_power():
    # Simulate paired 0/1 outcomes with the assumed discordance and run the exact test at the returned n.
    p_base, lift, psi = 0.7, 0.06, 0.2
    n = required_sample_size(p_base, lift, discordant_rate=psi)
    rng = np.random.default_rng(5)
    p01, p10 = (psi + lift) / 2, (psi - lift) / 2  # only-candidate-right, only-baseline-right
    wins = rng.binomial(n, p01, 4000)
    losses = rng.binomial(n - wins, p10 / (1 - p01))
    m = wins + losses  # exact two-sided binomial test at 1/2, vectorised: p = min(1, 2 P(X <= min(w, l)))
    pv = np.minimum(1.0, 2 * sps.binom.cdf(np.minimum(wins, losses), m, 0.5))
    assert np.mean(pv <= 0.05) == pytest.approx(0.8, abs=0.04)  # exact test is a little conservative


def test_min_detectable_effect_inverts_required_sample_size():
    for n in (100, 400, 2000):
        mde = min_detectable_effect(n, 0.6)
        assert required_sample_size(0.6, mde) == n
        mde_u = min_detectable_effect(n, 0.6, paired=False)
        assert required_sample_size(0.6, mde_u, paired=False) == n


def test_relative_lift_delta_method_covers():
    rng = np.random.default_rng(6)
    hits = 0
    for _ in range(1000):
        r = relative_lift(rng.binomial(1, 0.2, 2000), rng.binomial(1, 0.22, 2000))
        hits += r.ci[0] <= 0.1 <= r.ci[1]
    assert hits / 1000 == pytest.approx(0.95, abs=0.025)


def test_confidence_sequence_is_time_uniform_under_the_null():
    # With continuous monitoring, a fixed-n 95% interval misses the truth at *some* t far more than 5% of the time;
    # the confidence sequence should stay at or below alpha (it is asymptotic, so allow Monte Carlo slack).
    rng = np.random.default_rng(7)
    ever_missed = fixed_missed = 0
    for _ in range(300):
        a, b = rng.binomial(1, 0.3, 3000), rng.binomial(1, 0.3, 3000)
        cs = confidence_sequence(a, b, t_opt=1000)
        ever_missed += cs.first_exclusion(0.0) is not None
        d = b - a
        t = np.arange(1, 3001)
        m = np.cumsum(d) / t
        sd = np.sqrt(np.maximum(np.cumsum(d ** 2) / t - m ** 2, 1e-12))
        fixed_missed += bool(np.any(np.abs(m[29:]) > 1.96 * sd[29:] / np.sqrt(t[29:])))
    assert ever_missed / 300 <= 0.05 + 0.03
    assert fixed_missed / 300 > 2 * max(ever_missed, 1) / 300


def test_srm_matches_chisquare():
    res = srm_check([5000, 5210, 4900], [1, 1, 1])
    ref = sps.chisquare([5000, 5210, 4900])
    assert (res.statistic, res.p_value) == pytest.approx((ref.statistic, ref.pvalue))
    assert res.mismatch == (ref.pvalue < 0.001)


def test_chance_to_win_matches_integral_and_is_seeded():
    from scipy.integrate import quad
    post_a, post_b = sps.beta(1 + 45, 1 + 455), sps.beta(1 + 60, 1 + 440)
    exact = quad(lambda p: post_b.pdf(p) * post_a.cdf(p), 0, 1, points=[0.09, 0.12])[0]
    res = chance_to_win(45, 500, 60, 500)
    assert res.prob_b_beats_a == pytest.approx(exact, abs=0.005)
    assert res == chance_to_win(45, 500, 60, 500)


# --- compare_paired -----------------------------------------------------------------------------------------------

def test_compare_paired_picks_test_from_metric_type(binary_pair, continuous_pair):
    assert compare_paired(*binary_pair).test == "McNemar exact"
    assert compare_paired(*continuous_pair).test == "sign-flip permutation"
    assert compare_paired(*binary_pair, kind="continuous").test == "sign-flip permutation"
    g = np.arange(300) // 10
    c = compare_paired(*binary_pair, clusters=g)
    assert c.test == "cluster-robust t" and "30 cluster keys" in c.why


def test_compare_paired_fields_and_json(binary_pair):
    a, b = binary_pair
    c = compare_paired(a, b)
    assert isinstance(c, PairedComparison)
    assert c.n == 300 and c.diff == pytest.approx(b.mean() - a.mean())
    assert c.relative_lift == pytest.approx(c.diff / c.mean_a)
    assert c.ci[0] <= c.diff <= c.ci[1]
    assert c.significant == (c.p_value <= c.alpha)
    d = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    assert d["ci"] == list(c.ci) and d["significant"] == c.significant
    md = c._repr_markdown_()
    assert "| n |" in md and "Why this test" in md and "McNemar" in md


def test_compare_paired_zero_baseline_lift_is_nan_and_json_null():
    c = compare_paired([0, 0, 0, 0], [0, 1, 1, 0])
    assert math.isnan(c.relative_lift)
    assert json.loads(json.dumps(c.to_dict(), allow_nan=False))["relative_lift"] is None


def test_compare_paired_warns_when_underpowered():
    with pytest.warns(UnderpoweredWarning, match="needs about"):
        c = compare_paired([1, 0, 1, 1, 0, 1, 0, 1, 1, 0], [1, 1, 1, 1, 0, 1, 0, 1, 1, 0])
    assert not c.significant and c.notes


def test_warning_free_when_significant(binary_pair):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnderpoweredWarning)
        a = np.zeros(200); b = np.r_[np.ones(60), np.zeros(140)]
        assert compare_paired(a, b).significant


# --- errors say what is wrong and how to fix it -------------------------------------------------------------------

@pytest.mark.parametrize("a, b, match", [
    ([1, 0, 1], [1, 0], "same examples"),
    ([], [], "non-empty"),
    ([1, np.nan], [1, 0], "NaN"),
    ([1, 0], [1, np.inf], "NaN/inf"),
])
def test_bad_scores_raise(a, b, match):
    with pytest.raises(ValueError, match=match):
        compare_paired(a, b)


def test_other_errors():
    with pytest.raises(ValueError, match="'auto'"): compare_paired([1, 0], [0, 1], kind="ordinal")
    with pytest.raises(ValueError, match="alpha"): compare_paired([1, 0], [0, 1], alpha=5)
    with pytest.raises(ValueError, match="0/1"): mcnemar_exact([0.5, 1], [1, 0])
    with pytest.raises(ValueError, match="0/1"): compare_paired([0.5, 1], [1, 0], kind="binary")
    with pytest.raises(ValueError, match="one cluster key per example"): clustered_diff([1, 0], [0, 1], [1])
    with pytest.raises(ValueError, match="missing keys"): clustered_diff([1, 0, 1], [0, 1, 1], ["x", None, "y"])
    with pytest.raises(ValueError, match="holm"): adjust_pvalues([0.1], "bonferroni")
    with pytest.raises(ValueError, match="one count and one ratio"): srm_check([10, 20], [1, 1, 1])
    with pytest.raises(ValueError, match="baseline mean is 0"): relative_lift([0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="min\\(n_a, n_b\\)"): confidence_sequence([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="0 <= successes <= n"): chance_to_win(11, 10, 1, 10)
    with pytest.raises(ValueError, match="'BCa' or 'percentile'"): torch_paired_bootstrap([1, 0], [0, 1], method="basic")


# --- the null: false positives at the advertised rate ---------------------------------------------------------------

def test_aa_false_positive_rate_small():
    # 1,500 sims each: Monte Carlo SE ~0.56 points; the slow notebook cell checks +-1 point with 10,000.
    se = math.sqrt(0.05 * 0.95 / 1500)
    cont = aa_false_positive_rate("continuous", n=40, n_sims=1500, n_resamples=199, seed=3)
    binary = aa_false_positive_rate("binary", n=4000, n_sims=1500, seed=3)
    assert abs(cont - 0.05) <= 3 * se
    assert abs(binary - 0.05) <= 3 * se and binary <= 0.05 + 2 * se  # exact McNemar is conservative


# --- torch bootstrap agrees with scipy ----------------------------------------------------------------------------

def _scipy_ci(d, method, n_resamples=20_000, seed=9):
    ci = sps.bootstrap((d,), np.mean, n_resamples=n_resamples, method=method,
                       rng=np.random.default_rng(seed)).confidence_interval
    return ci.low, ci.high


@pytest.mark.parametrize("method", ["BCa", "percentile"])
@pytest.mark.parametrize("data", ["binary", "continuous", "skewed"])
def test_torch_bootstrap_agrees_with_scipy(method, data):
    rng = np.random.default_rng(12)
    n = 2000
    if data == "binary": a, b = rng.binomial(1, 0.6, n), rng.binomial(1, 0.64, n)
    elif data == "continuous": a, b = rng.beta(3, 3, n), rng.beta(3, 2.8, n)
    else: a, b = np.zeros(n), rng.exponential(1.0, n) ** 2  # strongly skewed: BCa's corrections matter
    res = torch_paired_bootstrap(a, b, n_resamples=20_000, seed=0, device="cpu", method=method)
    assert res.sampler == ("multinomial counts" if data == "binary" else "index gather")
    assert res.device == "cpu"
    # CI endpoints at 20,000 resamples carry ~2-3% of a bootstrap SE of Monte Carlo error each.
    assert res.ci == pytest.approx(_scipy_ci(b - a, method), abs=0.12 * res.se)
    # the bootstrap SD of a mean is the plug-in SD / sqrt(n), whichever sampler drew it
    assert res.se == pytest.approx(np.std(b - a) / math.sqrt(n), rel=0.03)


def test_torch_bca_differs_from_percentile_on_skewed_data():
    rng = np.random.default_rng(13)
    d = rng.exponential(1.0, 200) ** 2
    bca = torch_paired_bootstrap(np.zeros(200), d, 20_000, 0, "cpu").ci
    pct = torch_paired_bootstrap(np.zeros(200), d, 20_000, 0, "cpu", method="percentile").ci
    assert bca[1] > pct[1]  # BCa shifts right for right-skewed data, as scipy's does
    assert bca == pytest.approx(_scipy_ci(d, "BCa"), abs=0.05 * (pct[1] - pct[0]))


def test_torch_bootstrap_seeded_and_degenerate():
    a, b = np.r_[np.zeros(50), np.ones(50)], np.ones(100)
    assert torch_paired_bootstrap(a, b, 2000, 5, "cpu") == torch_paired_bootstrap(a, b, 2000, 5, "cpu")
    flat = torch_paired_bootstrap(np.ones(30), np.ones(30), 500, 0, "cpu")
    assert flat.ci == (0.0, 0.0)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_bootstrap_on_cuda_agrees_with_scipy():
    rng = np.random.default_rng(14)
    for a, b in ((rng.binomial(1, 0.6, 5000), rng.binomial(1, 0.63, 5000)), (rng.beta(3, 3, 5000), rng.beta(3, 2.8, 5000))):
        res = torch_paired_bootstrap(a, b, 20_000, 0)  # device chosen automatically
        assert res.device.startswith("cuda")
        assert res.ci == pytest.approx(_scipy_ci(b - a, "BCa"), abs=0.12 * res.se)
