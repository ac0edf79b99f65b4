"Run one optimization with the scripted model; used by test_resume.py as a subprocess it can SIGKILL."
import json, os, sys
from dspyopt_nb.data import load_task
from dspyopt_nb.engines.scripted import scripted_lm
from dspyopt_nb.optimize import optimize
from toy import toy_model

optimizer, run_dir = sys.argv[1], sys.argv[2]
task = load_task("sst2")
sp = task.splits(n_train=30, n_val=20, n_test=40, seed=0)
res = optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer=optimizer, preset="light",
               lm=scripted_lm(toy_model, delay_s=float(os.environ.get("TOY_DELAY", "0"))), seed=0, run_dir=run_dir,
               tracking=os.environ.get("TRACKING_URI") or False, progress=False)
print(json.dumps(dict(status=res.status, optimized=res.optimized, lm_calls=res.usage["lm_calls"], mlflow_run_id=res.mlflow_run_id)))
