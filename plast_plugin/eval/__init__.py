"""Evaluation on Parrot's MMMB and multilingual MMBench through lmms-eval.

- :mod:`.parrot_data` reads and checks the benchmark TSVs (``PLAST_PARROT_DIR`` or the hub; md5,
  counts, answer cells).
- :mod:`.prompts` builds the question prompt and the chat messages of a protocol (``vlmevalkit`` or
  ``parrot``); :mod:`.show_prompts` prints the text and token ids a model receives
  (``plast eval --show-prompts N``).
- :mod:`.extract` reads the chosen option from a free-text answer in any of the six scripts;
  :mod:`.exact_match` is VLMEvalKit's exact rules, reported beside it.
- :mod:`.scoring` computes plain, circular and per-category accuracy like VLMEvalKit.
- :mod:`.judge` is the optional LLM judge (OpenAI-compatible endpoint, off by default).
- :mod:`.lmms_tasks` holds the functions the YAMLs in ``eval_tasks/`` call.
  ``scripts/generate_tasks.py`` writes those YAMLs from the language table.
- :mod:`.compare` and :mod:`.paired_stats`: two runs question by question (``plast compare``).
- :mod:`.baseline`: the official checkpoint through the same converter (``plast eval --baseline``).

:func:`tasks_dir` is the folder to give lmms-eval as ``--include_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

TASKS_DIR_ENV = "PLAST_EVAL_TASKS_DIR"


def tasks_dir() -> Path:
    """The folder with the lmms-eval task YAMLs, to pass as ``--include_path``.

    ``$PLAST_EVAL_TASKS_DIR`` if set; else the copy a regular install (wheel, ``pip install .``)
    ships inside the package, ``plast_plugin/eval/tasks/``; else the source checkout's top-level
    ``eval_tasks/`` (an editable install, ``pip install -e .``, reads it in place).
    """
    here, override = Path(__file__).resolve().parent, os.environ.get(TASKS_DIR_ENV)
    candidates = [Path(override).expanduser()] if override else [here / "tasks", here.parents[1] / "eval_tasks"]
    for path in candidates:
        if (path / "mmmb" / "mmmb.yaml").is_file():
            return path
    raise FileNotFoundError(
        "the lmms-eval task folder was not found at " + " or ".join(str(p) for p in candidates)
        + f"; reinstall plast-plugin (a wheel ships the tasks inside the package), or set {TASKS_DIR_ENV} "
        "to a folder holding mmmb/ and mmbench_ml/")
