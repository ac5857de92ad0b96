"""The GPU training benchmark's code path, run on CPU at the tiny shape (scripts/bench_train.py
--shape tiny --device cpu): every configuration on a fresh model, results written as JSON; and
the prepared GPU script's checks that need no GPU."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from conftest import base_env

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench_train.py"
sys.path.insert(0, str(REPO / "scripts"))  # the benchmark's model builder is a script module, not in the package
from llava_cost_model import build_llava  # noqa: E402


def _bench(*args, timeout=600):
    return subprocess.run([sys.executable, str(BENCH), *args], env=base_env(PYTHONPATH=REPO), capture_output=True,
                          text=True, timeout=timeout)


def test_isolated_modes_on_cpu_tiny(tmp_path):
    out = tmp_path / "bench.json"
    proc = _bench("--shape", "tiny", "--device", "cpu", "--selections", "0-4", "16-20", "--gc", "on,off",
                  "--batches", "1", "--seq", "64", "--warmup", "0", "--steps", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    results = report["results"]
    assert [(r["method"], r["layers"], r["gc"]) for r in results] == [
        (m, s, gc) for gc in (True, False) for m, s in (("full", None), ("plast", "0-4"), ("plast", "16-20"), ("lora", None))]
    for r in results:
        assert "error" not in r, r
        assert r["step_s_median"] > 0 and all(math.isfinite(x) for x in r["losses"])
        assert r["batch"] == 1 and r["seq"] == 64
    by = {(r["method"], r["layers"], r["gc"]): r for r in results}
    # Same seed, same data: the first (un-updated) loss is the same for every method.
    first = {round(r["losses"][0], 5) for r in results}
    assert len(first) == 1, first
    layer = 4 * 64 * 64 + 3 * 64 * 172 + 2 * 64
    assert by[("plast", "0-4", True)]["trainable_params"] == 5 * layer
    # LoRA r128 on the 7 LM projections of every layer (not CLIP's), plus the projector (32->64->64).
    lora = 32 * 128 * (4 * (64 + 64) + 3 * (64 + 172))
    assert by[("lora", None, True)]["trainable_params"] == lora + (32 * 64 + 64) + (64 * 64 + 64)
    # AdamW: two fp32 moments per weight and a 4-byte step count per tensor (9 tensors per layer).
    assert by[("plast", "0-4", True)]["optimizer_state_bytes"] == 2 * 4 * 5 * layer + 4 * 5 * 9
    assert set(report["ratios"]) == {f"plast/{ref} layers={s} gc={g} batch=1" for ref in ("full", "lora")
                                     for s in ("0-4", "16-20") for g in ("on", "off")}


def test_time_budget_records_what_was_not_run(tmp_path):
    out = tmp_path / "bench.json"
    proc = _bench("--shape", "tiny", "--device", "cpu", "--modes", "plast", "--selections", "0-4", "--gc", "on",
                  "--batches", "1,2", "--seq", "64", "--time-budget", "0", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())["results"]
    assert [r["error"] for r in results] == ["not run: --time-budget spent"] * 2


def test_build_llava_on_device_in_dtype_restores_default_dtype():
    before = torch.get_default_dtype()
    model = build_llava("tiny", device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == before


def test_bench_gpu_script_without_wheels_says_what_to_do(tmp_path):
    subprocess.run(["bash", "-n", str(REPO / "scripts" / "bench_gpu.sh")], check=True)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "bench_gpu.sh"), "run"], capture_output=True, text=True,
                          env=base_env(WHEELS=str(tmp_path / "none")), timeout=60)
    assert proc.returncode == 2 and "run 'bash scripts/bench_gpu.sh fetch' first" in proc.stderr
