"""`plast export-config`: a selection file as the settings axolotl, ms-swift, LLaMA-Factory or lmms-engine read."""
from __future__ import annotations

import sys
from pathlib import Path

from plast_plugin.core.model_layout import MODULE_CHOICES
from plast_plugin.errors import PlastError
from plast_plugin.trainers.tools import APPROXIMATING, TOOLS

USAGE = {
    "axolotl": "axolotl: add these lines to the training YAML (full fine-tuning, no adapter)",
    # ms-swift's current name of the flag (its docs, "Command Line Parameters"); 3.x called it --train_type
    "swift": "ms-swift: swift sft --tuner_type full --freeze_parameters_ratio 1 --trainable_parameters_regex "
             "\"$(plast export-config SELECTION --for swift --model MODEL)\" ... (the regex is all that goes to stdout; "
             "ms-swift 3.x: --train_type)",
    "llamafactory": "LLaMA-Factory: merge these keys into the training YAML (replacing any finetuning_type)",
    "regex": "one Python regex per line; a parameter is trained when one matches its full name",
    # lmms-engine's CLI merges the config YAML's top-level keys over its defaults, so trainer_args is replaced whole
    "lmms-engine": "lmms-engine: merge freeze_modules into the trainer_args of your config YAML (lmms-engine 0.1.4 "
                   "needs transformers >=4.57.1,<5.9: run this where you train)",
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-config",
        help="write a selection as axolotl / ms-swift / LLaMA-Factory / lmms-engine settings or a regex list",
        description="Turn SELECTION (plast_layers.json) into what another trainer reads: axolotl "
        "`unfrozen_parameters` (YAML), the ms-swift `--trainable_parameters_regex` value, a LLaMA-Factory "
        "freeze config (YAML; only first-N / last-N layer blocks are expressible), the lmms-engine "
        "`freeze_modules` list (YAML: every module but the selection), or a plain regex list. "
        "Parameter names come from MODEL built with this environment's transformers (llava-hf: "
        "`language_model.model.layers.N.` in 4.x, `model.language_model.layers.N.` from 4.52 / 5.x): run it "
        "in the environment you train in. Output goes to stdout (or --out); notes go to stderr.",
    )
    parser.add_argument("selection", help="plast_layers.json (or the folder holding it)")
    parser.add_argument("--for", dest="tool", required=True, choices=TOOLS,
                        help="the trainer to write for")
    parser.add_argument("--model", required=True,
                        help="the model the tool will train (folder or hub id): llava-hf, LLaVA-NeXT-hf, Qwen2.5-VL, "
                        "Qwen3-VL, LLaVA-OneVision, InternVL (transformers 5) or a causal LM")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit when --model is a hub id")
    parser.add_argument("--modules", default=None, choices=MODULE_CHOICES,
                        help="what of each layer to train (default: the selection file's own)")
    parser.add_argument("--approximate", action="store_true",
                        help="llamafactory: for a selection that is not a first-N / last-N block, train the "
                        "smallest such block containing it instead of refusing (a warning says which extra layers); "
                        "lmms-engine: leave trainable the parameters no module path can freeze (LLaVA-OneVision's "
                        "image_newline) instead of refusing (a warning names them)")
    parser.add_argument("--out", default=None, help="write to this file instead of stdout")
    parser.set_defaults(func=run)


def run(args) -> int:
    from plast_plugin.core.selection_file import SelectionFile
    from plast_plugin.trainers.configs import build_target_model, export_config

    if args.approximate and args.tool not in APPROXIMATING:
        raise PlastError(f"--approximate applies to --for {' and --for '.join(APPROXIMATING)} only; {args.tool} "
                         f"expresses any selection exactly")
    selection = SelectionFile.load(args.selection)
    target = build_target_model(args.model, args.revision)
    from plast_plugin.models.model_source import converted_from, local_dir

    for warning in selection.check_identity(target.model, name_or_path=target.name,
                                            also_named=converted_from(local_dir(args.model, args.revision))):
        print(f"plast export-config: WARNING: {warning}", file=sys.stderr)
    exported = export_config(selection, target, args.tool, modules=args.modules, approximate=args.approximate)
    if exported.warning:
        print(f"plast export-config: WARNING: {exported.warning}", file=sys.stderr)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(exported.text, encoding="utf-8")
    else:
        sys.stdout.write(exported.text)
    print(f"plast export-config: layers {exported.trained_layers} of {target.architecture} ({target.num_layers} "
          f"layers; names {target.layers_path}.N. from transformers {target.transformers_version})"
          f"{' -> ' + args.out if args.out else ''}. {USAGE[args.tool]}", file=sys.stderr)
    return 0
