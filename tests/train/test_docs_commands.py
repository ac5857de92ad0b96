"""Every command the docs print runs as printed, at least as far as its argument parsing: each
```bash block of README.md and docs/*.md is read, and every `plast ...`, `python -m plast_plugin...`,
`torchrun ... -m plast_plugin...`, `deepspeed llava/train/train_mem.py ...`,
`python scripts/train_hf_example.py ...` and
`bash scripts/finetune_plast.sh` line is parsed by the real parser it reaches (the plast CLI with
its option validation; LLaVA's HfArgumentParser with the PLAST fields and PLAST's checks; the
finetune script through a stand-in launcher that parses what it would launch). So the docs
cannot drift from the code: a renamed flag or a bad value fails here.

`...` in a printed command stands for "the rest of LLaVA's usual flags" and is dropped.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, run_finetune_script

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "patches" / "README.md",
        REPO / "eval_tasks" / "README.md"]
FENCE = re.compile(r"^[ \t]*```[ \t]*(\w*)")
SHELL_TAGS = ("", "bash", "sh", "shell", "console")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
TRAIN_SCRIPTS = ("train_mem.py", "train.py", "train_xformers.py")
HF_EXAMPLE = "scripts/train_hf_example.py"
LOOKS_LIKE_OURS = re.compile(r"\s*([A-Za-z_]\w*=\S+\s+)*(plast|bash\s+\S*finetune_plast|python3?|deepspeed|torchrun)\b")


def shell_blocks(text):
    """(first line number, lines) of each fenced block tagged bash/sh/shell/console or untagged
    (the docs' untagged blocks are shell), indented fences (inside list items) included."""
    blocks, current, tag, start = [], None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence and current is None:
            current, tag, start = [], fence.group(1), number + 1
        elif fence:
            if tag in SHELL_TAGS:
                blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def doc_commands():
    """(where, kind, env, argv) for every command of interest in the docs' shell blocks."""
    found = []
    for doc in DOCS:
        for line_no, lines in shell_blocks(doc.read_text(encoding="utf-8")):
            pending, start = "", line_no
            for offset, line in enumerate(lines):
                if not pending:
                    start = line_no + offset
                if line.rstrip().endswith("\\"):  # a continued command: join it first
                    pending += line.rstrip()[:-1] + " "
                    continue
                full, pending = pending + line, ""
                try:
                    command = classify(shlex.split(full, comments=True))
                except ValueError:  # not shell (e.g. an untagged block of JSON): only ours matter
                    command = ("unparseable", {}, [full]) if LOOKS_LIKE_OURS.match(full) else None
                if command:
                    found.append((f"{doc.relative_to(REPO)}:{start}", *command))
    return found


def classify(tokens):
    env = {}
    while tokens and ASSIGNMENT.match(tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = value
    tokens = [t for t in tokens if t != "..."]
    if not tokens:
        return None
    head = tokens[0]
    if head == "plast":
        return "plast", env, tokens[1:]
    if head in ("bash", "sh") and len(tokens) > 1 and tokens[1].endswith("finetune_plast.sh"):
        return "finetune", env, tokens[2:]
    if head.endswith("finetune_plast.sh"):
        return "finetune", env, tokens[1:]
    if head in ("python", "python3", "torchrun", "deepspeed", "accelerate"):
        flag = next((f for f in ("-m", "--module") if f in tokens), None)
        if flag:
            module = tokens[tokens.index(flag) + 1]
            rest = tokens[tokens.index(flag) + 2:]
            if module == "plast_plugin.cli":
                return "plast", env, rest
            if module == "plast_plugin.llava.train":
                return "train", env, rest
            return None
        for i, token in enumerate(tokens):
            if token.endswith(TRAIN_SCRIPTS) and "llava" in token:
                return "train", env, tokens[i + 1:]
            if token.endswith(HF_EXAMPLE):
                return "hf_example", env, tokens[i + 1:]
    return None


COMMANDS = doc_commands()


def test_the_docs_print_the_commands_users_run():
    kinds = [kind for _, kind, _, _ in COMMANDS]
    assert "unparseable" not in kinds, [c for c in COMMANDS if c[1] == "unparseable"]
    # Guards the extraction itself: the README alone prints select, build-data, train, export, eval.
    assert kinds.count("plast") >= 10 and kinds.count("train") >= 2 and kinds.count("finetune") >= 1, COMMANDS
    subcommands = {argv[0] for _, kind, _, argv in COMMANDS if kind == "plast"}
    assert {"select", "build-data", "export", "eval"} <= subcommands


@pytest.mark.parametrize("where, kind, env, argv", [c for c in COMMANDS if c[1] == "plast"],
                         ids=[c[0] for c in COMMANDS if c[1] == "plast"])
def test_plast_command_parses(where, kind, env, argv):
    from plast_plugin.cli import build_parser

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{where}: `plast {' '.join(argv)}` does not parse (exit {exit_.code})")
    if args.command == "select":
        from plast_plugin.commands.select import options_from_args

        options_from_args(args)  # the rule, statistic, ... values validate


@pytest.mark.parametrize("where, kind, env, argv", [c for c in COMMANDS if c[1] == "hf_example"],
                         ids=[c[0] for c in COMMANDS if c[1] == "hf_example"])
def test_hf_trainer_example_command_parses(where, kind, env, argv):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_hf_example", REPO / HF_EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{where}: `python {HF_EXAMPLE} {' '.join(argv)}` does not parse (exit {exit_.code})")


# Parsing LLaVA's TrainingArguments has side effects on the process (with --deepspeed it sets
# ACCELERATE_USE_DEEPSPEED in os.environ and a global DeepSpeed config, which every later test
# and subprocess would inherit), so each command is parsed in a fresh interpreter.
PARSE_TRAINING_ARGS = """
import json, sys
import transformers
import llava.train.train as module
from plast_plugin.llava.integration import patch_llava_train_module
from plast_plugin.llava.arguments import check_plast_arguments
patch_llava_train_module(module)
parser = transformers.HfArgumentParser((module.ModelArguments, module.DataArguments, module.TrainingArguments))
model_args, data_args, training_args, unknown = parser.parse_args_into_dataclasses(
    args=json.loads(sys.argv[1]), return_remaining_strings=True)
check_plast_arguments(training_args)
print(json.dumps({"unknown": unknown}))
"""


@pytest.mark.parametrize("where, kind, env, argv", [c for c in COMMANDS if c[1] == "train"],
                         ids=[c[0] for c in COMMANDS if c[1] == "train"])
def test_training_command_parses(where, kind, env, argv, tmp_path):
    if "--output_dir" not in argv:
        argv = [*argv, "--output_dir", str(tmp_path / "out")]
    if "--plast_probe_data" in argv:
        # `--plast_layers auto` reads its probe data when the flags are checked (a file without the
        # pivot is refused before the model loads): the printed file name stands for parallel
        # questions in the printed languages, written here.
        at = argv.index("--plast_probe_data") + 1
        langs = argv[argv.index("--plast_languages") + 1].split(",") if "--plast_languages" in argv else ["zh"]
        probe = tmp_path / "probe.jsonl"
        probe.write_text("".join(json.dumps({"id": "q1", "lang": lang, "question": f"question in {lang}"}) + "\n"
                                 for lang in ["en", *langs]))
        argv = [*argv[:at], str(probe), *argv[at + 1:]]
    # The printed paths (scripts/zero3.json) are relative to the checkout.
    proc = subprocess.run([sys.executable, "-c", PARSE_TRAINING_ARGS, json.dumps(argv)], cwd=REPO,
                          env=base_env(**env), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{where}: {proc.stderr[-2000:]}"
    assert json.loads(proc.stdout.splitlines()[-1])["unknown"] == [], f"{where}: flags LLaVA's parser does not know"
    # PLAST probes and tunes the released LLaVA checkpoint; a base LLM (vicuna) would get a random
    # projector that PLAST then freezes.
    if "--model_name_or_path" in argv:
        model = argv[argv.index("--model_name_or_path") + 1]
        assert "llava" in model.lower(), f"{where}: trains {model}, not a LLaVA checkpoint"


@pytest.mark.parametrize("where, kind, env, argv", [c for c in COMMANDS if c[1] == "finetune"],
                         ids=[c[0] for c in COMMANDS if c[1] == "finetune"])
def test_finetune_script_command_parses(where, kind, env, argv, tmp_path):
    proc, launched = run_finetune_script(tmp_path, argv, cwd=REPO, **env)
    assert proc.returncode == 0, f"{where}: {proc.stderr[-2000:]}"
    assert launched["unknown"] == [], f"{where}: {launched['unknown']}"
    assert "llava" in launched["args"]["output_dir"], "LLaVA's loader takes the multimodal path only for 'llava' names"
