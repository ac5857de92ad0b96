"""scripts/demo_summary.py: the demo's closing statement follows from the numbers it is given."""

import importlib.util
import json
from pathlib import Path

import pytest

from eval_testutil import REPO

_spec = importlib.util.spec_from_file_location("demo_summary", REPO / "scripts" / "demo_summary.py")
summary_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary_script)


def _row(task, metric, a, b, low, high, p):
    return {"task": task, "benchmark": "mmbench_ml", "language": task.rsplit("_", 1)[1], "metric": metric,
            "n": 20, "acc_a": a, "acc_b": b, "delta": b - a, "ci95": [low, high], "mcnemar_p": p}


def _samples(folder: Path, predictions):
    folder.mkdir(parents=True)
    lines = [json.dumps({"acc": {"index": i, "correct": False, "prediction": p, "benchmark": "mmbench_ml",
                                 "language": "zh"}}) for i, p in enumerate(predictions)]
    (folder / "x_samples_mmbench_ml_zh.jsonl").write_text("\n".join(lines) + "\n")


def _demo_out(tmp_path, rows, frozen_changed=()):
    out = tmp_path / "demo"
    (out / "eval" / "mc_set").mkdir(parents=True)
    (out / "translation_loss.json").write_text(json.dumps({
        "selected_layers": [1, 2], "loss_before": {"zh": 3.5}, "loss_after": {"zh": 2.5},
        "understanding": {"problems": 120, "gap": {"zh": {"before": 1.2, "after": 0.9, "change": -0.3, "low": -0.4,
                                                           "high": -0.2}},
                          "english": {"before": 2.5, "after": 2.6, "change": 0.1, "low": 0.05, "high": 0.15}},
        "frozen_tensors_changed": list(frozen_changed), "selected_layers_changed": [1, 2]}))
    (out / "eval" / "mc_set" / "mc_set.json").write_text(json.dumps({
        "label": "plast demo translation choice (not MMBench)", "languages": ["en", "zh"],
        "questions_per_language": 20, "rotations": 4, "chance": 0.25, "md5": {}}))
    runs = out / "eval" / "translation-choice"
    (runs / "compare").mkdir(parents=True)
    (runs / "compare" / "compare.json").write_text(json.dumps({"rows": rows, "means": []}))
    _samples(runs / "baseline", ["A", "A", "A", None])
    _samples(runs / "model", ["A", "B", None, None])
    return out


def test_no_difference_is_called_chance_and_a_pipeline_proof(tmp_path):
    out = _demo_out(tmp_path, [_row("mmbench_ml_zh", "acc", 0.25, 0.35, -0.1, 0.3, 0.5)])
    summary, lines = summary_script.summarize(out, 600)
    text = "\n".join(lines)
    assert "No before/after difference is distinguishable from chance" in text and "pipeline proof" in text
    assert "not MMBench/MMMB numbers" in text and summary["significant_gains"] == 0
    assert "25.0 ->   35.0 (+10.0, 95% CI [-10.0, +30.0], McNemar p 0.5)" in text
    assert summary["answers"]["base"] == {"rows": 4, "answered": 0.75, "most_common_letter": "A",
                                          "most_common_share": 0.75}
    assert "-> PASSED" in text and "total time so far: 600 s" in text
    assert "  zh 1.200 -> 0.900 (-0.300 [-0.400, -0.200])" in text and "over 120 held-out problems" in text
    assert "English retention, NLL(English answer | English question): 2.500 -> 2.600 (+0.100 [+0.050, +0.150]" in text
    assert summary_script.main(["--out", str(out)]) == 0 and (out / "summary.json").is_file()


def test_a_significant_gain_or_loss_is_named(tmp_path):
    rows = [_row("mmbench_ml_zh", "acc", 0.2, 0.6, 0.15, 0.6, 0.01),
            _row("mmbench_ml_ar", "acc", 0.5, 0.1, -0.6, -0.2, 0.002),
            _row("mmbench_ml_ru", "acc", 0.2, 0.4, 0.05, 0.4, 0.2)]  # CI excludes 0 but p >= 0.05: not named
    summary, lines = summary_script.summarize(_demo_out(tmp_path, rows), None)
    assert summary["verdict"] == "Significant gains (CI excludes 0, p < 0.05) in mmbench_ml_zh acc; " \
                                 "significant losses in mmbench_ml_ar acc."
    assert "a bonus, not a claim" in "\n".join(lines)


def test_a_moved_frozen_tensor_fails_the_summary(tmp_path):
    out = _demo_out(tmp_path, [_row("mmbench_ml_zh", "acc", 0.25, 0.25, -0.1, 0.1, 1.0)],
                    frozen_changed=["model.embed_tokens.weight"])
    _, lines = summary_script.summarize(out, None)
    assert lines[-1].startswith("frozen-tensor check: 1 tensors") and lines[-1].endswith("FAILED")
    assert summary_script.main(["--out", str(out)]) == 1


@pytest.mark.parametrize("missing", ["translation_loss.json", "eval/translation-choice/compare/compare.json"])
def test_a_missing_step_output_is_named(tmp_path, missing):
    out = _demo_out(tmp_path, [_row("mmbench_ml_zh", "acc", 0.25, 0.25, -0.1, 0.1, 1.0)])
    (out / missing).unlink()
    with pytest.raises(SystemExit, match=missing.split("/")[-1]):
        summary_script.main(["--out", str(out)])
