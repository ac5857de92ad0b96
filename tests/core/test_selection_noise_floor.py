"""A selected layer whose MSD is below its own noise floor (pivot vs pivot) is warned about and
recorded in the selection file."""

import json

import pytest

from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import load_parallel_questions
from plast_plugin.pipeline import BelowNoiseFloorWarning, run_selection


def test_layer_below_its_noise_floor_warns_and_is_recorded(tiny_llama, questions_jsonl):
    model, tokenizer = tiny_llama
    questions = load_parallel_questions(questions_jsonl)
    with pytest.warns(BelowNoiseFloorWarning, match=r"layer \d+ MSD [\d.e-]+ < noise") as caught:
        selection = run_selection(model, tokenizer, questions, SelectionOptions(rule="msd-above:0.08", contiguous_shallow=False), progress=False)
    by_layer = {r.layer: r for r in selection.layers}
    below = [layer for layer in selection.selected_layers if by_layer[layer].msd < by_layer[layer].noise_msd]
    assert below  # this tiny model's second-highest MSD is below its noise floor
    assert [b["layer"] for b in selection.data["selected_below_noise_floor"]] == below
    assert len(caught) == 1
    # layers above their floor: nothing to say
    with _no_warning(BelowNoiseFloorWarning):
        clean = run_selection(model, tokenizer, questions, SelectionOptions(rule="msd-top:1"), progress=False)
    assert "selected_below_noise_floor" not in clean.data


class _no_warning:
    def __init__(self, category):
        self.category = category

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self.caught = self._catch.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        assert not [w for w in self.caught if issubclass(w.category, self.category)]


def test_plast_select_prints_and_saves_it(tiny_llama_dir, questions_jsonl, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "sel"
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "plast_plugin.cli", "select", "--model", str(tiny_llama_dir),
                           "--data", str(questions_jsonl), "--out", str(out), "--device", "cpu", "--quiet",
                           "--no-plot", "--rule", "msd-above:0.08", "--no-contiguous-shallow"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "plast: warning: selected layer(s) whose MSD is below their own noise floor" in proc.stderr
    assert json.loads((out / "plast_layers.json").read_text())["data"]["selected_below_noise_floor"]
