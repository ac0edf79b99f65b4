"The optimizer protocol's contract (dspyopt_nb.testing) against every built-in optimizer and the example plugin of another distribution."
import pytest

from dspyopt_nb.testing import CHECKS, Contract, run_check

# each optimizer's preset, shrunk so that the contract's runs take seconds with the toy model
KNOBS = {"none": {}, "bootstrap": dict(num_candidate_programs=2),
         "mipro": dict(num_candidates=2, num_trials=3, minibatch_size=6, max_bootstrapped_demos=2, max_labeled_demos=2),
         "gepa": dict(max_metric_calls=60), "simba": dict(max_steps=2, num_candidates=2, bsize=6, max_demos=2),
         "ga": dict(population_size=4, generations=2, minibatch_size=6, bootstrap_examples=6, n_proposals=2, elite_count=1),
         "gated": dict(num_candidates=3, max_labeled_demos=2),
         "greedy": dict(max_demos=2, candidates_per_step=2, minibatch_size=6)}
_CONTRACTS = {}

def _contract(name):
    if name not in _CONTRACTS: _CONTRACTS[name] = Contract(name, knobs=KNOBS[name])
    return _CONTRACTS[name]

def test_the_example_plugin_is_found_through_its_entry_point():
    import importlib.metadata
    from dspyopt_nb.optimizers.protocol import get_optimizer
    ep = [e for e in importlib.metadata.entry_points(group="dspyopt.optimizers") if e.name == "greedy"]
    assert ep and ep[0].dist.name == "dspyopt-greedy"          # another distribution, installed by make test
    assert type(get_optimizer("greedy")).__module__ == "dspyopt_greedy"

@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("name", list(KNOBS))
def test_contract(name, check):
    if name == "none" and check == "refuses_bad_knobs": pytest.skip("none takes no knobs")
    run_check(name, check, _contract(name))
