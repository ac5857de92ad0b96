"""What the LLaVA import hook costs every Python start in the training env.

The `.pth` hook runs in every interpreter of the environment (each DeepSpeed rank, each tool), so
its cost is paid everywhere. This bench starts `python -c pass` many times with the hook on and
with PLAST_DISABLE_HOOK=1, alternating the two so machine load hits both alike, for two installs:
the env's own (editable, `pip install -e .`) and a regular install of the wheel in a fresh venv
that borrows the env's other packages. It prints the medians, the median of the paired
differences and its spread, and the import time of `site` (which runs the .pth lines) from `-X importtime` (immune to the
noise of spawning processes on a loaded machine); the goal is a difference within 5 ms.

    .envs/train/bin/python scripts/bench_hook_startup.py [--repeats 40]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_ms(python: str, disabled: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("PLAST_DISABLE_HOOK", "PYTHONPATH")}
    if disabled:
        env["PLAST_DISABLE_HOOK"] = "1"
    began = time.perf_counter()
    subprocess.run([python, "-c", "pass"], env=env, check=True, cwd=tempfile.gettempdir())
    return (time.perf_counter() - began) * 1000


def measure(python: str, repeats: int) -> dict:
    for _ in range(3):  # warm the page cache and .pyc files for both settings
        start_ms(python, False), start_ms(python, True)
    on, off = [], []
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        for disabled in order:
            (off if disabled else on).append(start_ms(python, disabled))
    diffs = sorted(a - b for a, b in zip(on, off))
    q1, q3 = diffs[len(diffs) // 4], diffs[(3 * len(diffs)) // 4]
    return {"hook_on_ms": statistics.median(on), "hook_off_ms": statistics.median(off),
            "paired_delta_ms": statistics.median(diffs), "delta_iqr_ms": (q1, q3), "repeats": repeats}


def site_import_us(python: str, disabled: bool) -> int:
    """Cumulative import time of `site` (`-X importtime`, microseconds) in one start: site runs
    every .pth line, so hook on minus hook off is the hook's own share of the start."""
    env = {k: v for k, v in os.environ.items() if k not in ("PLAST_DISABLE_HOOK", "PYTHONPATH")}
    if disabled:
        env["PLAST_DISABLE_HOOK"] = "1"
    err = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                         env=env, cwd=tempfile.gettempdir()).stderr
    line = next(line for line in err.splitlines() if line.rstrip().endswith("| site"))
    return int(line.split("|")[1])


def site_delta_us(python: str, repeats: int) -> tuple[float, float, float]:
    """Medians of site's import time with the hook on and off, alternating, and of the paired differences."""
    on, off = [], []
    for i in range(repeats):
        for disabled in ((False, True) if i % 2 == 0 else (True, False)):
            (off if disabled else on).append(site_import_us(python, disabled))
    return statistics.median(on), statistics.median(off), statistics.median(a - b for a, b in zip(on, off))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the training env's interpreter")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from plast_plugin.testing.wheel_install import build_wheel, venv_with_wheel

    with tempfile.TemporaryDirectory() as tmp:
        regular = venv_with_wheel(build_wheel(REPO, Path(tmp), args.python), Path(tmp) / "venv", args.python)
        for label, python in (("editable", args.python), ("regular", str(regular))):
            r = measure(python, args.repeats)
            print(f"startup-ms install={label} hook=on {r['hook_on_ms']:.1f} hook=off {r['hook_off_ms']:.1f} "
                  f"paired-delta {r['paired_delta_ms']:+.1f} (iqr {r['delta_iqr_ms'][0]:+.1f}..{r['delta_iqr_ms'][1]:+.1f}, "
                  f"n={r['repeats']})", flush=True)
            on, off, delta = site_delta_us(python, args.repeats)
            print(f"site-import-us install={label} hook=on {on:.0f} hook=off {off:.0f} paired-delta {delta:+.0f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
