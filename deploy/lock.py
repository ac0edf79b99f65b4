"""Write deploy/constraints.txt: exact versions of settings.ini's `requirements` and everything they pull in, read from
the environment this runs in (the one `make test` passed in). The image installs with `pip install -c constraints.txt`,
so it gets the versions that were tested; settings.ini itself stays lock-free.

    .venv/bin/python deploy/lock.py          # rewrite deploy/constraints.txt
    .venv/bin/python deploy/lock.py --check  # exit 1 when a requirement is missing or its pin does not satisfy settings.ini
"""
import configparser, shlex, sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "deploy" / "constraints.txt"
KEYS = ("requirements",)   # the image runs the package; dev (tests, docs) and torch (GPU images) are not in it
EXTRA_TOP = ("jupyterlab>=4",)  # the image's `lab` mode

def requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    return [Requirement(r) for k in KEYS for r in shlex.split(cfg["DEFAULT"][k])] + [Requirement(r) for r in EXTRA_TOP]

def closure(reqs: list[Requirement]) -> dict[str, str]:
    "name -> installed version for `reqs` and their dependencies (markers evaluated for Linux, this Python)."
    env, seen, done, todo = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux"}, {}, set(), list(reqs)
    while todo:
        r = todo.pop()
        name = canonicalize_name(r.name)
        key = (name, frozenset(r.extras))      # a package reached again with other extras pulls in more
        if key in done or (r.marker and not r.marker.evaluate(env | {"extra": ""})): continue
        done.add(key)
        try: dist = metadata.distribution(r.name)
        except metadata.PackageNotFoundError: sys.exit(f"{r.name} is not installed. Fix: make install, then run this again.")
        seen[name] = dist.version
        for s in dist.requires or []:
            d = Requirement(s)
            extras = r.extras or set()
            if d.marker and not any(d.marker.evaluate(env | {"extra": e}) for e in (extras | {""})): continue
            d.marker = None                    # evaluated here, against the extras it was asked with
            todo.append(d)
    return seen

def main(argv=sys.argv[1:]) -> int:
    reqs = requirements()
    if "--check" in argv:
        pins = dict(l.split("==", 1) for l in OUT.read_text().split("\n") if "==" in l and not l.startswith("#"))
        bad = [f"{r}: {'not pinned' if canonicalize_name(r.name) not in pins else 'pinned ' + pins[canonicalize_name(r.name)]}"
               for r in reqs if canonicalize_name(r.name) not in pins or not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
        if bad: print("deploy/constraints.txt disagrees with settings.ini:\n  " + "\n  ".join(bad) + "\nFix: .venv/bin/python deploy/lock.py"); return 1
        print(f"deploy/constraints.txt pins all {len(reqs)} requirements within settings.ini's ranges"); return 0
    pins = closure(reqs)
    OUT.write_text("# Written by deploy/lock.py from the tested environment; the image installs with -c this file.\n"
                   + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    print(f"wrote {len(pins)} pins to {OUT.relative_to(ROOT)}"); return 0

if __name__ == "__main__": sys.exit(main())
