"""`plast ablate`'s statistics and plan, checked against numbers computed by hand (no model)."""
from __future__ import annotations

import json

import pytest

from plast_plugin.ablation import stats
from plast_plugin.ablation.plan import PLAST, budget_matched, check_budgets, make_plan, parse_alternatives
from plast_plugin.ablation.report import MEAN, format_table, summarize
from plast_plugin.errors import PlastError


def test_t_quantiles_match_the_printed_table():
    # t_{0.975, df} from any printed Student-t table; beyond df 30 (the series) as well.
    for df, expected in ((1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (30, 2.0423),
                         (40, 2.0211), (60, 2.0003), (120, 1.9799)):
        assert stats.t975(df) == pytest.approx(expected, abs=5e-5)
    with pytest.raises(ValueError, match="at least 1 degree of freedom"):
        stats.t975(0)


def test_mean_interval_by_hand():
    # values 1, 2, 3: mean 2, sd 1, half width 4.302653 * 1 / sqrt(3) = 2.484138
    interval = stats.mean_interval([1.0, 2.0, 3.0])
    assert (interval.mean, interval.n) == (2.0, 3)
    assert interval.low == pytest.approx(-0.484138, abs=1e-6)
    assert interval.high == pytest.approx(4.484138, abs=1e-6)
    # two seeds 0.5, 1.5: sd 0.707107, half width 12.706205 * 0.707107 / sqrt(2) = 6.353102
    interval = stats.mean_interval([0.5, 1.5])
    assert interval.low == pytest.approx(-5.353102, abs=1e-6)
    assert interval.high == pytest.approx(7.353102, abs=1e-6)


def test_one_seed_has_no_interval():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.mean_interval([1.0])


def test_paired_difference_is_token_weighted_over_the_same_questions():
    plast = {"a": (2.0, 4), "b": (3.0, 2)}
    other = {"a": (2.4, 4), "b": (3.6, 2)}
    # (2.0 + 3.0 - 2.4 - 3.6) / (4 + 2) = -1/6, the difference of the two runs' losses 5/6 - 1
    assert stats.paired_difference(plast, other) == pytest.approx(-1 / 6)
    assert stats.run_loss(plast) - stats.run_loss(other) == pytest.approx(-1 / 6)
    with pytest.raises(ValueError, match="different questions"):
        stats.paired_difference(plast, {"a": (2.4, 4)})
    with pytest.raises(ValueError, match="answer tokens"):
        stats.paired_difference(plast, {"a": (2.4, 4), "b": (3.6, 3)})


def test_verdicts_by_hand():
    # per-seed differences -0.1, -0.2, -0.3: mean -0.2, sd 0.1, half width 4.302653 * 0.1 / sqrt(3) = 0.248414
    tied = stats.mean_interval([-0.1, -0.2, -0.3])
    assert (tied.low, tied.high) == (pytest.approx(-0.448414, abs=1e-6), pytest.approx(0.048414, abs=1e-6))
    assert stats.verdict(tied) == stats.TIED
    # -0.20, -0.22, -0.24: sd 0.02, half width 0.049683 -> [-0.269683, -0.170317], entirely below 0
    better = stats.mean_interval([-0.20, -0.22, -0.24])
    assert better.high == pytest.approx(-0.170317, abs=1e-6)
    assert stats.verdict(better) == stats.BETTER
    assert stats.verdict(stats.mean_interval([0.20, 0.22, 0.24])) == stats.WORSE


def test_mean_over_languages_by_hand():
    per_language = {"zh": {0: -0.1, 1: -0.3}, "ru": {0: 0.1, 1: -0.1}}
    assert stats.mean_over_languages(per_language) == pytest.approx({0: 0.0, 1: -0.2})


def _result(name, alt, seed, layers, per_question):
    return {"run": name, "alternative": alt, "seed": seed, "layers": list(layers), "trainable_params": 10,
            "losses": {"zh": per_question}}


def test_summary_pairs_by_seed_and_question():
    plan = make_plan(model="m", num_layers=6, selection=[1, 2], modules="layer", seeds=2, alternatives=["first"],
                     scoring={"languages": ["zh"]})
    plan.budget = 10
    # seed 0: PLAST (1.0 + 2.0) / 3 tokens, first (1.3 + 2.0) / 3 -> difference -0.1
    # seed 1: PLAST (1.0 + 1.0) / 3,        first (1.6 + 1.0) / 3 -> difference -0.2
    losses = {("plast", 0): {"q1": [1.0, 1], "q2": [2.0, 2]}, ("first", 0): {"q1": [1.3, 1], "q2": [2.0, 2]},
              ("plast", 1): {"q1": [1.0, 1], "q2": [1.0, 2]}, ("first", 1): {"q1": [1.6, 1], "q2": [1.0, 2]}}
    results = {run.name: _result(run.name, run.alternative, run.seed, run.layers, losses[(run.alternative, run.seed)])
               for run in plan.runs}
    summary = summarize(plan, results)
    diff = summary["differences"]["first"]["zh"]
    # mean -0.15, sd 0.070711, half width 12.706205 * 0.070711 / sqrt(2) = 0.635310
    assert diff["mean"] == pytest.approx(-0.15)
    assert (diff["low"], diff["high"]) == (pytest.approx(-0.785310, abs=1e-6), pytest.approx(0.485310, abs=1e-6))
    assert diff["verdict"] == stats.TIED
    assert summary["differences"]["first"][MEAN]["mean"] == pytest.approx(-0.15)  # one language
    assert summary["alternatives"][PLAST]["loss"]["zh"]["mean"] == pytest.approx((1.0 + 2.0 / 3) / 2)
    assert summary["verdicts"] == {"first": {"translation": stats.TIED}}  # no --problems: one measure
    assert "not distinguishable at 95%" in format_table(summary)
    json.dumps(summary)  # ablation.json is plain JSON


def test_accuracy_verdict_is_read_the_other_way_round_from_the_loss():
    """Higher accuracy is better: PLAST minus A entirely ABOVE 0 is "PLAST better" (for a loss that
    interval would read "PLAST worse"), entirely below 0 is "PLAST worse"."""
    # per-seed accuracy differences 0.20, 0.22, 0.24: [0.170317, 0.269683] (as in test_verdicts_by_hand)
    above = stats.mean_interval([0.20, 0.22, 0.24])
    assert above.low == pytest.approx(0.170317, abs=1e-6)
    assert stats.verdict(above, higher_is_better=True) == stats.BETTER
    assert stats.verdict(above) == stats.WORSE  # the loss reading of the same interval
    below = stats.mean_interval([-0.20, -0.22, -0.24])
    assert stats.verdict(below, higher_is_better=True) == stats.WORSE
    assert stats.verdict(stats.mean_interval([-0.1, -0.2, -0.3]), higher_is_better=True) == stats.TIED


def _eval(correct):
    return {"mmbench_ml_zh": {"acc": {"accuracy": sum(correct.values()) / len(correct), "units": len(correct),
                                      "correct": correct}}}


def test_accuracy_summary_pairs_by_seed_and_question_by_hand():
    plan = make_plan(model="m", num_layers=6, selection=[1, 2], modules="layer", seeds=3, alternatives=["last"],
                     scoring={"languages": ["zh"], "eval": {"plast_eval": ["plast"], "arguments": []}})
    plan.budget = 10
    q = {"q1": [1.0, 1]}
    # 5 questions; PLAST right on 5, 4, 5 per seed, last on 4, 3, 4 -> differences 0.2, 0.2, 0.2
    # except seed 2, where last gets one more question right: 5 - 3 -> 0.4.
    # differences 0.2, 0.2, 0.4: mean 0.266667, sd 0.115470, half 4.302653 * 0.115470 / sqrt(3) = 0.286844
    right = {("plast", 0): 5, ("last", 0): 4, ("plast", 1): 4, ("last", 1): 3, ("plast", 2): 5, ("last", 2): 3}
    results = {}
    for run in plan.runs:
        n = right[(run.alternative, run.seed)]
        result = _result(run.name, run.alternative, run.seed, run.layers, q)
        result["eval"] = _eval({str(i): int(i < n) for i in range(5)})
        results[run.name] = result
    summary = summarize(plan, results)
    entry = summary["accuracy"]["tasks"]["mmbench_ml_zh"]["acc"]
    assert entry["alternatives"][PLAST]["per_seed"] == {"0": 1.0, "1": 0.8, "2": 1.0}
    diff = entry["differences"]["last"]
    assert diff["per_seed"] == {"0": pytest.approx(0.2), "1": pytest.approx(0.2), "2": pytest.approx(0.4)}
    assert diff["mean"] == pytest.approx(0.266667, abs=1e-6)
    assert (diff["low"], diff["high"]) == (pytest.approx(-0.020177, abs=1e-6), pytest.approx(0.553511, abs=1e-6))
    assert diff["verdict"] == stats.TIED
    # the same table with PLAST right everywhere and last right on 3 of 5 at every seed: +0.4 exactly, above 0
    for run in plan.runs:
        results[run.name]["eval"] = _eval({str(i): int(run.alternative == PLAST or i < 3) for i in range(5)})
    entry = summarize(plan, results)["accuracy"]["tasks"]["mmbench_ml_zh"]["acc"]
    assert entry["differences"]["last"]["verdict"] == stats.BETTER  # higher accuracy: PLAST better
    table = format_table(summarize(plan, results))
    assert "positive: PLAST more accurate" in table and "mmbench_ml_zh acc better" in table
    # different questions across runs are refused, not paired
    results["last-seed1"]["eval"] = _eval({str(i): 1 for i in range(1, 6)})
    with pytest.raises(ValueError, match="different questions"):
        summarize(plan, results)
    # a run lmms-eval scored only part of the tasks of: refused with the way out
    results["last-seed1"]["eval"] = {}
    with pytest.raises(PlastError, match=r"run last-seed1 was evaluated on tasks \[\], run plast-seed0 on "
                                         r"\['mmbench_ml_zh'\].*delete that run's result.json"):
        summarize(plan, results)


def test_plan_is_deterministic_and_draws_differ_from_the_selection():
    kwargs = dict(model="m", num_layers=30, selection=[1, 2, 3, 4, 5], modules="layer", seeds=3, random_draws=3)
    plan = make_plan(**kwargs)
    assert plan.to_dict() == make_plan(**kwargs).to_dict()
    assert plan.alternatives == ["plast", "first", "last", "random1", "random2", "random3"]
    assert len(plan.runs) == 18
    layers = {(r.alternative, r.seed): r.layers for r in plan.runs}
    assert layers[("first", 2)] == (0, 1, 2, 3, 4) and layers[("last", 0)] == (25, 26, 27, 28, 29)
    draws = [r.layers for r in plan.runs if r.alternative.startswith("random")]
    assert all(len(set(d)) == 5 and d != (1, 2, 3, 4, 5) and all(0 <= i < 30 for i in d) for d in draws)
    assert len(set(draws)) > 1  # each seed draws again
    assert plan.differences(plan.to_dict()) == []
    other = make_plan(**{**kwargs, "seeds": 4}).to_dict()
    assert plan.differences(other) == ["runs", "seeds"]


def test_plan_refusals():
    base = dict(model="m", num_layers=8, modules="layer")
    with pytest.raises(PlastError, match="--seeds 1: .*at least 2 seeds"):
        make_plan(**base, selection=[1, 2], seeds=1)
    with pytest.raises(PlastError, match=r"first:3 is the selection itself .*--alternatives last,random"):
        make_plan(**base, selection=[0, 1, 2], seeds=2)
    with pytest.raises(PlastError, match="all 8 layers"):
        make_plan(**base, selection=list(range(8)), seeds=2)
    with pytest.raises(PlastError, match="--alternatives"):
        parse_alternatives("first,middle")
    # K above half the layers: first and last overlap the selection, which is allowed (and recorded)
    plan = make_plan(**base, selection=[1, 2, 3, 4, 5], seeds=2, random_draws=1)
    assert [r.layers for r in plan.runs if r.alternative == "first"][0] == (0, 1, 2, 3, 4)


def _counts(plan, per_layer_set: dict) -> dict[str, int]:
    return {run.name: per_layer_set[run.layers] for run in plan.runs if not run.whole_model}


def test_unequal_budgets_are_refused():
    plan = make_plan(model="m", num_layers=4, selection=[1], modules="mlp", seeds=2, alternatives=["first", "last"])
    with pytest.raises(PlastError, match=r"do not train the same number of parameters.*last-seed0 \(layers 3\) 12"):
        check_budgets(plan, _counts(plan, {(1,): 10, (0,): 10, (3,): 12}))
    assert check_budgets(plan, _counts(plan, {(1,): 10, (0,): 10, (3,): 10})) == 10 and plan.budget == 10
    assert plan.unmatched == {}


def test_reference_alternatives_are_planned_and_never_mistaken_for_budget_matched():
    plan = make_plan(model="m", num_layers=6, selection=[2, 3], modules="layer", seeds=2,
                     alternatives=["first", "rule:msd-top:3", "full", "lora"],
                     rule_layers={"rule:msd-top:3": [0, 1, 4]})
    assert plan.alternatives == ["plast", "first", "rule:msd-top:3", "full", "lora"]
    layers = {r.alternative: r.layers for r in plan.runs}
    assert layers["full"] == layers["lora"] == tuple(range(6)) and layers["rule:msd-top:3"] == (0, 1, 4)
    assert [r.name for r in plan.runs if r.seed == 0][2:] == ["rule-msd-top-3-seed0", "full-seed0", "lora-seed0"]
    assert [r.whole_model for r in plan.runs if r.seed == 0] == [False, False, False, True, True]
    # first:2 is the selection here: refused as ever
    with pytest.raises(PlastError, match="first:2 is the selection itself"):
        make_plan(model="m", num_layers=6, selection=[0, 1], modules="layer", seeds=2, alternatives=["first"])
    # a rule picking 3 layers trains more than PLAST's 2: a reference row; full and lora are never counted here
    assert check_budgets(plan, _counts(plan, {(2, 3): 20, (0, 1): 20, (0, 1, 4): 30})) == 20
    assert plan.unmatched == {"rule:msd-top:3": 30}
    assert not budget_matched(plan, "rule:msd-top:3") and budget_matched(plan, "first")
    results = {run.name: {**_result(run.name, run.alternative, run.seed, run.layers, {"q1": [1.0 + run.seed, 1]}),
                          "trainable_params": {"plast": 20, "first": 20, "rule:msd-top:3": 30, "full": 600,
                                               "lora": 90}[run.alternative]}
               for run in plan.runs}
    plan.scoring = {"languages": ["zh"]}
    summary = summarize(plan, results)
    assert {alt: e["budget_matched"] for alt, e in summary["alternatives"].items()} == {
        "plast": True, "first": True, "rule:msd-top:3": False, "full": False, "lora": False}
    table = format_table(summary)
    for alt in ("rule:msd-top:3", "full", "lora"):
        assert f"vs {alt} (not budget-matched):" in table
    assert "vs first:" in table and "0.00M*" not in table.split("first")[1].splitlines()[0]
    assert "0.00M*" in [line for line in table.splitlines() if line.startswith("full ")][0]


def test_alternatives_are_checked_before_anything_trains():
    assert parse_alternatives("first,last,random,rule:msd-top:5,full,lora") == [
        "first", "last", "random", "rule:msd-top:5", "full", "lora"]
    with pytest.raises(PlastError, match=r"^unknown selection rule 'msd-bottom:5'"):
        parse_alternatives("rule:msd-bottom:5")
    with pytest.raises(PlastError, match=r"rule:0-4: .*'0-4' is a layer spec"):
        parse_alternatives("rule:0-4")
    with pytest.raises(PlastError, match=r"rule:msd-top:5: the selection file has no per-layer statistics"):
        parse_alternatives("first,rule:msd-top:5", statistics=False)
    assert parse_alternatives("first,full", statistics=False) == ["first", "full"]  # no rule, no statistics needed


def _answers(en: float, zh: float) -> dict:
    return {"en": {"q1": [en, 1], "q2": [en, 1]}, "zh": {"q1": [zh, 1], "q2": [zh, 1]}}


def test_gap_and_retention_verdicts_read_in_their_own_direction_by_hand():
    """Lower is better for both: a smaller understanding gap and a lower English answer NLL. Numbers set so
    that PLAST's gap is smaller than first's at every seed while its English answers got worse."""
    plan = make_plan(model="m", num_layers=6, selection=[1, 2], modules="layer", seeds=3, alternatives=["first"],
                     scoring={"languages": ["zh"], "pivot": "en", "problems": [{"path": "p.jsonl"}]})
    plan.budget = 10
    # base: English 1.0, Chinese 2.0 -> gap 1.0
    # PLAST seed s: English 1.2 + 0.01 s, Chinese 1.5 + 0.01 s -> gap 0.3
    # first seed s: English 1.0 + 0.02 s, Chinese 1.9 + 0.03 s -> gap 0.9 + 0.01 s
    answers = {("plast", s): _answers(1.2 + 0.01 * s, 1.5 + 0.01 * s) for s in range(3)}
    answers.update({("first", s): _answers(1.0 + 0.02 * s, 1.9 + 0.03 * s) for s in range(3)})
    results = {run.name: {**_result(run.name, run.alternative, run.seed, run.layers, {"q1": [1.0, 1]}),
                          "answers": answers[(run.alternative, run.seed)]} for run in plan.runs}
    base = {"losses": {"zh": {"q1": [1.0, 1]}}, "answers": _answers(1.0, 2.0)}
    summary = summarize(plan, results, base)
    u = summary["understanding"]
    assert u["base"]["understanding_gap"]["zh"] == pytest.approx(1.0) and u["base"]["english"] == pytest.approx(1.0)
    assert u["alternatives"][PLAST]["understanding_gap"][MEAN]["mean"] == pytest.approx(0.3)
    # gap difference per seed: (zh_P - zh_F) - (en_P - en_F) = -0.60, -0.61, -0.62: below 0, PLAST better
    gap = u["differences"]["first"]["understanding_gap"]["zh"]
    assert gap["per_seed"] == {"0": pytest.approx(-0.60), "1": pytest.approx(-0.61), "2": pytest.approx(-0.62)}
    assert gap["verdict"] == stats.BETTER
    # English difference per seed 0.20, 0.19, 0.18: above 0, PLAST worse
    english = u["differences"]["first"]["english"]
    assert english["mean"] == pytest.approx(0.19) and english["verdict"] == stats.WORSE
    # retention against the untrained model: PLAST +0.20, +0.21, +0.22 worse; first 0, +0.02, +0.04
    # (mean 0.02, half width 4.302653 * 0.02 / sqrt(3) = 0.049683: [-0.029683, 0.069683]) kept
    assert u["alternatives"][PLAST]["english_change"]["verdict"] == "English WORSE than untrained at 95%"
    first_change = u["alternatives"]["first"]["english_change"]
    assert first_change["low"] == pytest.approx(-0.029683, abs=1e-6)
    assert first_change["verdict"] == "English kept (no change at 95%)"
    assert summary["verdicts"]["first"] == {"translation": stats.TIED, "understanding_gap": stats.BETTER,
                                            "english": stats.WORSE}
    table = format_table(summary)
    assert "understanding gap  PLAST better at 95%" in table and "English answer NLL PLAST worse at 95%" in table
    assert "English WORSE than untrained at 95%" in table
    # the same numbers the other way round turn both verdicts
    swapped = {name: {**r, "alternative": "first" if r["alternative"] == PLAST else PLAST} for name, r in results.items()}
    swapped = {run.name: {**swapped[f"{'first' if run.alternative == PLAST else PLAST}-seed{run.seed}"],
                          "run": run.name, "alternative": run.alternative} for run in plan.runs}
    turned = summarize(plan, swapped, base)["verdicts"]["first"]
    assert (turned["understanding_gap"], turned["english"]) == (stats.WORSE, stats.BETTER)
    json.dumps(summary)


def test_selection_file_keeps_the_ablation_record(tmp_path):
    from plast_plugin.core.selection_file import ModelIdentity, SelectionFile

    path = tmp_path / "plast_layers.json"
    selection = SelectionFile(selected_layers=[1, 2], model=ModelIdentity("X", 4, 8, 4), rule="manual")
    selection.save(path)
    assert "ablation" not in json.loads(path.read_text())  # files without an ablation are unchanged
    loaded = SelectionFile.load(path)
    loaded.ablation = {"run_dir": "/r", "verdicts": {"first": {"verdict": stats.BETTER}}}
    loaded.save(path)
    again = SelectionFile.load(path)
    assert again.ablation == loaded.ablation
    again.save(path)
    assert json.loads(path.read_text())["ablation"]["verdicts"]["first"]["verdict"] == stats.BETTER
    raw = json.loads(path.read_text())
    raw["ablation"] = ["not", "an", "object"]
    path.write_text(json.dumps(raw))
    with pytest.raises(PlastError, match="'ablation' must be an object"):
        SelectionFile.load(path)
