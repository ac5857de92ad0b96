"""Writes the lmms-eval task files in ``eval_tasks/`` of this checkout from the language table.

    python scripts/generate_tasks.py            # rewrite eval_tasks/
    python scripts/generate_tasks.py --check    # exit 1 and name the files that differ

A maintainer's tool, not part of the wheel: it rewrites the checkout's committed files (the wheel
ships their copies).

Per benchmark, in lm-evaluation-harness's xnli layout: the shared ``_default_template_<bench>_yaml``
(no ``.yaml`` suffix, so lmms-eval does not index it as a task), the group ``<bench>.yaml``, the
``utils.py`` re-exporting :mod:`plast_plugin.eval.lmms_tasks`, and per language a ``<bench>_<lang>.yaml``
loading the one-line ``sources/<bench>_<lang>.jsonl`` (benchmark, language, Parrot file). The files are
committed (and shipped in the wheel); ``tests/eval/test_task_files.py`` checks they equal what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from plast_plugin.eval.parrot_data import BENCHMARKS, PARROT_REPO, parrot_filename
from plast_plugin.eval.scoring import metric_names
from plast_plugin.data.languages import PARROT_LANGUAGES

REGENERATE_COMMAND = "python scripts/generate_tasks.py"
CHECKOUT_TASKS_DIR = Path(__file__).resolve().parents[1] / "eval_tasks"
# How the task files name each benchmark in their comments.
TITLES = {"mmmb": "MMMB (Parrot)", "mmbench_ml": "multilingual MMBench-dev (Parrot)"}
HEADER = f"# Generated from plast_plugin/data/languages.py by `{REGENERATE_COMMAND}`; do not edit.\n"
HOOKS = ("aggregate_acc", "aggregate_acc_exact", "aggregate_circular_acc", "aggregate_circular_acc_exact",
         "doc_to_messages", "doc_to_target", "doc_to_text", "doc_to_visual", "process_docs", "process_results")


def group_names() -> list[str]:
    return list(BENCHMARKS)


def task_names() -> list[str]:
    return [f"{bench}_{lang}" for bench in BENCHMARKS for lang in PARROT_LANGUAGES]


def _template(bench: str) -> str:
    metrics = "".join(f"  - metric: {metric}\n"
                      f"    aggregation: !function utils.aggregate_{metric}\n"
                      "    higher_is_better: true\n" for metric in metric_names(bench))
    return (
        HEADER
        + f"# Shared template of the {TITLES[bench]} tasks ({bench}_<lang>.yaml include it).\n"
        "# The one-line source file of each task names benchmark and language; process_docs reads the\n"
        f"# TSV from $PLAST_PARROT_DIR or the Hugging Face dataset {PARROT_REPO} (md5-checked).\n"
        "# The prompt protocol is $PLAST_EVAL_PROTOCOL (vlmevalkit, the default, or parrot): see\n"
        "# plast_plugin/eval/prompts.py. Generation: greedy, max_new_tokens 512 as VLMEvalKit's LLaVA at the\n"
        "# commit behind the published rows (AIDC-AI/Parrot 989d6d0).\n"
        "dataset_path: json\n"
        "test_split: test\n"
        "output_type: generate_until\n"
        "process_docs: !function utils.process_docs\n"
        "doc_to_visual: !function utils.doc_to_visual\n"
        "doc_to_text: !function utils.doc_to_text\n"
        "doc_to_messages: !function utils.doc_to_messages\n"
        "doc_to_target: !function utils.doc_to_target\n"
        "process_results: !function utils.process_results\n"
        "generation_kwargs:\n"
        "  max_new_tokens: 512\n"
        "  temperature: 0\n"
        "  top_p: 1.0\n"
        "  num_beams: 1\n"
        "  do_sample: false\n"
        "metric_list:\n"
        + metrics
        + "lmms_eval_specific_kwargs:\n"
        "  default:\n"
        "    # null: the protocol's answer instruction; a string replaces it (\"\" drops it).\n"
        "    instruction: null\n"
        "metadata:\n"
        "  version: 3.0  # 3.0: VLMEvalKit's LLaVA prompt to the token (system, layout, NaN options), 512 new tokens\n"
    )


def _task(bench: str, lang: str) -> str:
    return (HEADER
            + f"task: {bench}_{lang}\n"
            f"include: _default_template_{bench}_yaml\n"
            "dataset_kwargs:\n"
            "  data_files:\n"
            f"    test: sources/{bench}_{lang}.jsonl\n")


def _source(bench: str, lang: str) -> str:
    # lmms-eval's json loader reads this one line; process_docs replaces it by the TSV's rows.
    return json.dumps({"benchmark": bench, "language": lang, "file": parrot_filename(bench, lang),
                       "repo": PARROT_REPO}, ensure_ascii=False) + "\n"


def _group(bench: str) -> str:
    tasks = "".join(f"  - {bench}_{lang}\n" for lang in PARROT_LANGUAGES)
    metrics = "".join(f"  - metric: {metric}\n"
                      "    aggregation: mean\n"
                      "    weight_by_size: false\n" for metric in metric_names(bench))
    return (HEADER
            + f"# {TITLES[bench]}: one task per language; the group score is the unweighted mean over languages.\n"
            f"group: {bench}\n"
            "task:\n"
            + tasks
            + "aggregate_metric_list:\n"
            + metrics
            + "metadata:\n"
            "  version: 2.0\n")


def _utils(bench: str) -> str:
    hooks = "".join(f"    {name},\n" for name in HOOKS)
    return (f'"""lmms-eval hooks of the {TITLES[bench]} tasks; the logic lives in plast_plugin.eval.\n\n'
            f'Generated by `{REGENERATE_COMMAND}`; do not edit."""\n'
            "from plast_plugin.eval.lmms_tasks import (  # noqa: F401\n"
            + hooks
            + ")\n")


def render_task_files() -> dict[str, str]:
    """Every generated file: path relative to the tasks folder -> text."""
    files: dict[str, str] = {}
    for bench in BENCHMARKS:
        files[f"{bench}/_default_template_{bench}_yaml"] = _template(bench)
        files[f"{bench}/{bench}.yaml"] = _group(bench)
        files[f"{bench}/utils.py"] = _utils(bench)
        for lang in PARROT_LANGUAGES:
            files[f"{bench}/{bench}_{lang}.yaml"] = _task(bench, lang)
            files[f"{bench}/sources/{bench}_{lang}.jsonl"] = _source(bench, lang)
    return files


def stale_files(root) -> list[str]:
    """Files in `root`'s benchmark folders of the kinds written here that nothing generates (a task
    of a language dropped from the table, which lmms-eval would still load)."""
    root, expected = Path(root), render_task_files()
    stale = []
    for path in sorted(root.glob("*/**/*")):  # the benchmark folders' files, not the top-level README
        rel = path.relative_to(root).as_posix()
        generated_kind = path.suffix in (".yaml", ".jsonl", ".py") or path.name.endswith("_yaml")
        if path.is_file() and generated_kind and "__pycache__" not in path.parts and rel not in expected:
            stale.append(rel)
    return stale


def _outdated(root: Path) -> dict[str, bytes]:
    """The generated files missing from `root` or differing there: path -> bytes."""
    files = {rel: text.encode("utf-8") for rel, text in render_task_files().items()}
    return {rel: data for rel, data in files.items()
            if not (root / rel).is_file() or (root / rel).read_bytes() != data}


def differences(root) -> list[str]:
    """How the task files in `root` differ from the generated ones (empty: they are equal)."""
    root = Path(root)
    return ([f"{rel} differs" if (root / rel).is_file() else f"{rel} is missing" for rel in _outdated(root)]
            + [f"{rel} is not generated (no benchmark or language of the table makes it)"
               for rel in stale_files(root)])


def write_task_files(root) -> list[str]:
    """Write the generated files into `root`; returns the paths that changed."""
    root = Path(root)
    outdated = _outdated(root)
    for rel, data in outdated.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return list(outdated)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE_COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CHECKOUT_TASKS_DIR,
                        help="the tasks folder (default: eval_tasks/ of this source checkout)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files differ")
    args = parser.parse_args(argv)
    root = args.out
    if not args.check and not root.is_dir():
        print(f"{root} is not a folder: run this in a source checkout (its eval_tasks/), or pass --out DIR",
              file=sys.stderr)
        return 1
    if args.check:
        problems = differences(root)
        for problem in problems:
            print(f"{root}: {problem}", file=sys.stderr)
        if problems:
            print(f"regenerate them with: {REGENERATE_COMMAND}" + ("" if root == CHECKOUT_TASKS_DIR else
                                                                   f" --out {root}"), file=sys.stderr)
        return 1 if problems else 0
    for rel in write_task_files(root):
        print(f"wrote {root / rel}")
    stale = stale_files(root)
    for rel in stale:
        print(f"{root / rel}: not generated (no benchmark or language of the table makes it): delete it "
              "(git rm), or lmms-eval will still load it", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
