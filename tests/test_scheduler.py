"""The scheduler: cron parsing, the store, one scheduler per folder, and a real scheduler process that fires a job, is
killed, restarts, and neither loses nor doubles a run."""
import datetime as dt, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import yaml

from dspyopt_nb.jobs.runner import JobRecord, list_jobs
from dspyopt_nb.jobs.scheduler import (ScheduleError, _scheduler_lock, add_schedule, list_schedules, parse_cron, read_fires,
                                  remove_schedule, scheduler_dir, serve)

HERE = Path(__file__).parent
UTC = dt.timezone.utc

def _job(tmp_path, file="job", **fields) -> Path:
    shutil.copy(HERE / "toy.py", tmp_path / "toy.py")
    cfg = dict(task="sst2", n_train=8, n_val=8, n_test=8, optimizer="none", lm="scripted:toy:toy_model",
               tracking=False, output_dir="runs") | fields
    p = tmp_path / f"{file}.yaml"; p.write_text(yaml.safe_dump(cfg)); return p

@pytest.mark.parametrize("expr,after,expected", [
    ("0 3 * * *", "2026-01-02 12:00:00", "2026-01-03 03:00:00"),
    ("0 3 * * 1-5", "2026-01-02 12:00:00", "2026-01-05 03:00:00"),   # Friday noon -> Monday: crontab weekdays
    ("30 6 * * 0", "2026-01-02 12:00:00", "2026-01-04 06:30:00"),    # 0 is Sunday, as in crontab
    ("30 6 * * 7", "2026-01-02 12:00:00", "2026-01-04 06:30:00"),    # so is 7
    ("*/15 * * * *", "2026-01-02 12:07:00", "2026-01-02 12:15:00"),
    ("*/20 * * * * *", "2026-01-02 12:07:05", "2026-01-02 12:07:20"),  # six fields: seconds first
])
def test_cron_expressions_mean_what_crontab_means(expr, after, expected):
    t = dt.datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert parse_cron(expr, timezone="UTC").get_next_fire_time(None, t) == dt.datetime.fromisoformat(expected).replace(tzinfo=UTC)

@pytest.mark.parametrize("expr", ["0 3 * *", "every day", "61 * * * *", "0 3 * * 8"])
def test_bad_cron_names_the_fix(expr):
    with pytest.raises(ScheduleError, match="Fix:"): parse_cron(expr)

def test_store_add_replace_list_remove(tmp_path):
    cfg = _job(tmp_path)
    s = add_schedule("a", cfg, "0 3 * * *", dir=tmp_path / "s")
    assert s.config == str(cfg) and s.next_run.endswith("03:00:00" + s.next_run[19:])
    add_schedule("b", cfg, "*/5 * * * *", dir=tmp_path / "s")
    assert [x.name for x in list_schedules(tmp_path / "s")] == ["b", "a"]     # soonest first
    with pytest.raises(ScheduleError, match="--replace"): add_schedule("a", cfg, "0 4 * * *", dir=tmp_path / "s")
    assert add_schedule("a", cfg, "0 4 * * *", dir=tmp_path / "s", replace=True).cron == "0 4 * * *"
    remove_schedule("a", dir=tmp_path / "s")
    assert [x.name for x in list_schedules(tmp_path / "s")] == ["b"]
    assert oct((tmp_path / "s" / "schedules.db").stat().st_mode & 0o777) == "0o600"

def test_a_broken_config_is_not_scheduled(tmp_path):
    from dspyopt_nb.jobs.runner import ConfigError
    with pytest.raises(ConfigError, match="optimiser"): add_schedule("x", _job(tmp_path, optimiser="mipro"), "0 3 * * *", dir=tmp_path / "s")
    assert list_schedules(tmp_path / "s") == []

def test_one_scheduler_per_folder(tmp_path):
    d = scheduler_dir(tmp_path / "s")
    with _scheduler_lock(d):
        with pytest.raises(ScheduleError, match="already running"): serve(d, log=lambda m: None)

# -- a real scheduler process ----------------------------------------------------------------------------------------------

def _start(d: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DSPYOPT_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dspyopt_nb.cli", "scheduler", "--dir", str(d), "--poll", "0.2"],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT, env=env)

def _wait(cond, timeout: float, what: str, poll=0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v: return v
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")

def _fired(d): return [f for f in read_fires(d) if f["event"] == "fired"]
def _started(d): return [f for f in read_fires(d) if f["event"] == "started"]

def _record(root: Path, run_id: str) -> JobRecord | None:
    p = root / "job" / run_id / "job.json"
    return JobRecord.load(p) if p.exists() else None

@pytest.mark.slow
def test_scheduler_fires_survives_a_kill_and_catches_up_once(tmp_path):
    d, log = scheduler_dir(tmp_path / "sched"), tmp_path / "scheduler.log"
    cfg, runs = _job(tmp_path), tmp_path / "runs"
    procs = []
    try:
        a = _start(d, log); procs.append(a)
        _wait(lambda: any(f["event"] == "scheduler_started" for f in read_fires(d)), 60, "scheduler A to start")
        # two fire times a minute apart, soon: T1 while scheduler A runs, T2 while no scheduler runs
        t1 = (dt.datetime.now() + dt.timedelta(seconds=8)).replace(microsecond=0)
        t2 = t1 + dt.timedelta(seconds=60)
        cron = f"{t1.second} {t1.minute},{t2.minute} {','.join(dict.fromkeys([str(t1.hour), str(t2.hour)]))} * * *"
        add_schedule("job", cfg, cron, dir=d)                         # added while A runs: A picks it up from the store
        [f1] = _wait(lambda: _fired(d), 60, "the first fire")
        assert f1["scheduled_for"].startswith(t1.isoformat())
        [s1] = _wait(lambda: _started(d), 30, "the first job to start")
        a.send_signal(signal.SIGKILL); a.wait()                       # a crash right after the fire
        # B starts at once: T1 was recorded as done when it fired, so B must not fire it again
        b = _start(d, log); procs.append(b)
        _wait(lambda: [f["event"] for f in read_fires(d)].count("scheduler_started") == 2, 60, "scheduler B to start")
        time.sleep(5)
        assert len(_fired(d)) == 1                                    # B did not double T1
        b.send_signal(signal.SIGTERM); assert b.wait(timeout=30) == 0  # a clean stop
        # the job outlived its killed scheduler (it holds its own lock) and finishes
        rec1 = _wait(lambda: (r := _record(runs, s1["run_id"])) and r.status != "running" and r, 240, "the first job to finish")
        assert rec1.status == "finished", rec1.error
        # T2 passes with no scheduler running ...
        _wait(lambda: dt.datetime.now() > t2 + dt.timedelta(seconds=2), 120, "T2 to pass", poll=0.5)
        # ... and C runs it once, as soon as it starts
        c_start = time.time()
        c = _start(d, log); procs.append(c)
        fires = _wait(lambda: len(_fired(d)) >= 2 and _fired(d), 60, "the catch-up fire")
        assert fires[1]["scheduled_for"].startswith(t2.isoformat()) and fires[1]["at"] - c_start < 30
        started = _wait(lambda: len(_started(d)) >= 2 and _started(d), 30, "the second job to start")
        # stopping the scheduler does not wait for (or kill) the job in flight: it finishes on its own
        t_stop = time.time()
        c.send_signal(signal.SIGTERM); assert c.wait(timeout=30) == 0
        assert time.time() - t_stop < 15 and "detached" in [f["event"] for f in read_fires(d)]
        rec2 = _wait(lambda: (r := _record(runs, started[1]["run_id"])) and r.status != "running" and r, 240, "the second job to finish")
        assert rec2.status == "finished", rec2.error
        assert len(_fired(d)) == 2                                    # nothing else fired: no double, no extra
    finally:
        for p in procs:
            if p.poll() is None: p.kill(); p.wait()
        for f in read_fires(d):   # on a failure above, do not leave a job running
            if f["event"] != "started": continue
            r = _record(runs, f["run_id"])
            if r is None or r.status == "running":
                try: os.killpg(f["pid"], signal.SIGKILL)
                except (ProcessLookupError, PermissionError): pass
    recs = list_jobs(runs)
    assert len(recs) == 2 and all(r.status == "finished" for r in recs) and {r.schedule for r in recs} == {"job"}
    first, second = sorted(recs, key=lambda r: r.started)
    assert first.finished <= second.started                           # the two runs never overlapped
    events = [f["event"] for f in read_fires(d)]
    assert events.count("scheduler_started") == 3 and events.count("scheduler_stopped") == 2   # A was killed
    assert "job: finished" in (d / "logs" / f"{second.id}.log").read_text()                   # the job's own output
