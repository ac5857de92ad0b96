"""Demo stages after `plast select` (training env): the whole PLAST pipeline on a real model.

  4. a LLaVA built from the real SmolLM2-135M-Instruct (language model weights unchanged) and a
     small random CLIP vision tower (the demo's data is text-only: the tower is never trained)
  5. `plast build-data` on the training split of the parallel questions
  6. held-out measures, before: the English-translation loss per language (the training objective), and
     on held-out math problems from templates never probed or trained on (scripts/demo_assets.py's
     problems_heldout.jsonl) the understanding gap, NLL(English answer | question in L) minus
     NLL(English answer | English question), and English retention, NLL(English answer | English question)
  7. LLaVA's own train() (`python -m plast_plugin.llava.train`) with --plast_layers <selection file>
  8. the same measures after; every tensor outside the selected layers bit-identical to the start;
     a table, runs/demo/translation_loss.json (all three measures) and a plot

Usage: python scripts/demo_train.py --selection runs/demo/select/plast_layers.json [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / ".cache" / "demo"


def log(message: str) -> None:
    print(f"   {message}", flush=True)


def build_llava(out: Path) -> Path:
    """SmolLM2 in an official-format LLaVA; cached, since it is deterministic."""
    from plast_plugin.testing.tiny_models import build_llava_from_llama, make_tiny_clip_vision

    done = out / "plast_demo_ready"
    if done.exists():
        log(f"reusing {out}")
        return out
    clip = out.parent / "clip_vision_small"
    make_tiny_clip_vision(clip, seed=0)
    # LLaVA's v1 preprocessing assumes LLaMA's tokenizer (a BOS, "</s>" as one token); with
    # SmolLM2's BPE it would mask every label and train nothing: fit the tokenizer to it.
    build_llava_from_llama(ASSETS / "smollm2", clip, out, seed=0, fit_llava_v1_tokenizer=True)
    done.write_text("ok\n")
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff1f\uff01\u061f])\s*")


def question_sentences(source: Path, target: Path) -> Path:
    """Each math problem's final sentence: the question itself ("How many apples are left?").
    Whole problems are about three times longer, and on 2 CPU cores would not train for a few
    hundred steps within the demo's time."""
    rows = []
    for line in source.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        parts = [part for part in _SENTENCE_END.split(row["question"].strip()) if part.strip()]
        rows.append({**row, "question": parts[-1]})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return target


def load_llava(path: Path):
    from plast_plugin.models.loading import load_for_probe

    model, tokenizer, _ = load_for_probe(str(path), "cpu", "fp32")
    return model, tokenizer


def losses(model, tokenizer, heldout) -> dict[str, float]:
    from plast_plugin.models.translation_loss import translation_losses

    return {lang: result.loss for lang, result in translation_losses(model, tokenizer, heldout, batch_size=16).items()}


def answer_nll(model, tokenizer, problems) -> dict[str, dict[str, float]]:
    """Per language (English included), each problem's NLL per answer token of its English reference answer."""
    from plast_plugin.models.translation_loss import answer_losses

    scored = answer_losses(model, tokenizer, problems, batch_size=16, fast=True)
    return {lang: {qid: total / tokens for qid, (total, tokens) in result.per_question.items()}
            for lang, result in scored.items()}


def understanding(before: dict, after: dict, pivot: str = "en") -> dict:
    """Gap per language and English NLL, before and after, and each change with its 95% interval over the
    problems (paired by problem; each problem counts once, whatever its answer's length)."""
    from plast_plugin.ablation.stats import mean_interval

    def per_problem_gap(nll: dict, lang: str) -> dict[str, float]:
        return {qid: nll[lang][qid] - nll[pivot][qid] for qid in nll[pivot]}

    def entry(b: dict[str, float], a: dict[str, float]) -> dict:
        change = mean_interval([a[q] - b[q] for q in b])
        return {"before": sum(b.values()) / len(b), "after": sum(a.values()) / len(a), "change": change.mean,
                "low": change.low, "high": change.high}

    gaps = {lang: entry(per_problem_gap(before, lang), per_problem_gap(after, lang)) for lang in before if lang != pivot}
    return {"problems": len(before[pivot]), "gap": gaps, "english": entry(before[pivot], after[pivot])}


def language_model_state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()
            if "vision_tower" not in name}


def plot(before: dict, after: dict, path: Path, layers: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = list(before)
    xs = range(len(languages))
    fig, axis = plt.subplots(figsize=(7, 3.6))
    axis.bar([x - 0.2 for x in xs], [before[l] for l in languages], 0.4, label="before", color="#90a4ae")
    axis.bar([x + 0.2 for x in xs], [after[l] for l in languages], 0.4, label="after PLAST", color="#e65100")
    axis.set_xticks(list(xs), [f"{l} -> en" for l in languages])
    axis.set_ylabel("held-out translation loss (nats/token)")
    axis.set_title(f"SmolLM2-135M in LLaVA: PLAST on layers {layers}, held-out questions")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--selection", required=True, help="plast_layers.json from `plast select`")
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--learning-rate", default="1e-4")
    parser.add_argument("--gradient-checkpointing", default="False", choices=("True", "False"))
    args = parser.parse_args()
    torch.manual_seed(0)
    import transformers

    # LLaVA loads its vision tower from its own folder; the "weights not used" list is noise here.
    transformers.logging.set_verbosity_error()
    out = Path(args.out).resolve()
    bin_dir = Path(sys.executable).parent

    from plast_plugin.core.selection_file import load_selected_layers
    from plast_plugin.data.parallel_data import load_parallel_questions
    from plast_plugin.data.parallel_problems import load_parallel_problems

    print("\n== 4. LLaVA from SmolLM2-135M-Instruct + a small vision tower", flush=True)
    base = build_llava(ASSETS / "llava_smollm2")
    model, tokenizer = load_llava(base)
    layers = load_selected_layers(args.selection, model)  # refuses a selection made for another model
    log(f"selected layers from {args.selection}: {layers}")

    print("\n== 5. plast build-data (training split)", flush=True)
    languages = "zh,pt,ar,tr,ru"
    data = out / "data" / "train.json"
    train_questions = question_sentences(ASSETS / "questions_train.jsonl", out / "data" / "questions_train.jsonl")
    heldout_questions = question_sentences(ASSETS / "questions_heldout.jsonl", out / "data" / "questions_heldout.jsonl")
    log("each problem's final (question) sentence, in every language")
    subprocess.run([str(bin_dir / "plast"), "build-data", "--data", str(train_questions),
                    "--languages", languages, "--out", str(data), "--quiet"], check=True)

    print("\n== 6. held-out measures, before: translation loss, understanding gap, English retention", flush=True)
    heldout = load_parallel_questions(heldout_questions, languages.split(","), "en")
    problems = load_parallel_problems(ASSETS / "problems_heldout.jsonl", ["en", *languages.split(",")], "en")
    started = time.time()
    before = losses(model, tokenizer, heldout)
    answers_before = answer_nll(model, tokenizer, problems)
    start_state = language_model_state(model)
    del model
    log(f"{len(heldout.ids)} held-out questions per language: " + ", ".join(f"{k} {v:.3f}" for k, v in before.items()))
    log(f"{len(problems.questions.ids)} held-out problems per language (from templates never probed or trained on), "
        f"scored in {time.time() - started:.0f}s with the translation loss")

    print(f"\n== 7. LLaVA train() with --plast_layers {args.selection} ({args.steps} steps, CPU)", flush=True)
    train_dir = out / "train"
    command = [
        sys.executable, "-m", "plast_plugin.llava.train",
        "--model_name_or_path", str(base), "--version", "v1",
        "--vision_tower", str(ASSETS / "clip_vision_small"), "--mm_projector_type", "mlp2x_gelu",
        "--mm_vision_select_layer", "-2", "--mm_use_im_start_end", "False", "--mm_use_im_patch_token", "False",
        "--image_aspect_ratio", "pad", "--data_path", str(data), "--lazy_preprocess", "True",
        "--plast_layers", str(Path(args.selection).resolve()),
        "--output_dir", str(train_dir), "--overwrite_output_dir", "True",
        "--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(args.steps),
        "--learning_rate", args.learning_rate, "--lr_scheduler_type", "cosine", "--warmup_ratio", "0.03",
        "--weight_decay", "0.0", "--gradient_checkpointing", args.gradient_checkpointing,
        "--model_max_length", "2048",
        "--save_strategy", "no", "--logging_steps", "25", "--report_to", "none",
        "--dataloader_num_workers", "0", "--seed", "0",
    ]
    started = time.time()
    subprocess.run(command, check=True, env={**os.environ, "WANDB_DISABLED": "true"})
    log(f"trained in {time.time() - started:.0f}s")

    print("\n== 8. held-out measures, after", flush=True)
    trained, tokenizer = load_llava(train_dir)
    after = losses(trained, tokenizer, heldout)
    measured = understanding(answers_before, answer_nll(trained, tokenizer, problems))
    end_state = language_model_state(trained)
    from plast_plugin.core.model_layout import find_decoder_layers

    layout = find_decoder_layers(trained)  # the layer names of this model, not a hard-coded prefix
    prefixes = tuple(layout.parameter_prefix(i) for i in layers)
    changed = sorted({layout.layer_of(name) for name in start_state
                      if name.startswith(prefixes) and not torch.equal(start_state[name], end_state[name])})
    frozen_moved = [name for name in start_state
                    if not name.startswith(prefixes) and not torch.equal(start_state[name], end_state[name])]
    print(f"\n{'':>9} {'translation loss (nats/token)':>30}   {'understanding gap (nats/token), 95% CI of the change':>58}")
    print(f"{'language':>9} {'before':>9} {'after':>9} {'change':>9}   {'before':>9} {'after':>9} {'change [95% CI]':>30}")
    for lang in before:
        g = measured["gap"][lang]
        print(f"{lang + ' -> en':>9} {before[lang]:>9.3f} {after[lang]:>9.3f} {after[lang] - before[lang]:>+9.3f}   "
              f"{g['before']:>9.3f} {g['after']:>9.3f} {g['change']:>+9.3f} [{g['low']:+.3f}, {g['high']:+.3f}]")
    e = measured["english"]
    print(f"English retention, NLL(English answer | English question): {e['before']:.3f} -> {e['after']:.3f} "
          f"({e['change']:+.3f}, 95% CI [{e['low']:+.3f}, {e['high']:+.3f}] over {measured['problems']} problems)")
    print(f"\ntrained layers whose weights changed: {[int(i) for i in changed]} (selected: {layers})")
    print(f"tensors outside the selected layers that changed: {len(frozen_moved)} of "
          f"{sum(1 for n in start_state if not n.startswith(prefixes))} (must be 0)")
    result = {"selected_layers": layers, "steps": args.steps, "learning_rate": args.learning_rate,
              "heldout_questions_per_language": len(heldout.ids), "loss_before": before, "loss_after": after,
              "understanding": measured,
              "frozen_tensors_changed": frozen_moved, "selected_layers_changed": [int(i) for i in changed]}
    (out / "translation_loss.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(before, after, out / "translation_loss.png", layers)
    log(f"wrote {out / 'translation_loss.json'} and {out / 'translation_loss.png'}")
    ok = not frozen_moved and len(changed) == len(layers) and all(after[l] < before[l] for l in before)
    if not ok:
        print("demo check FAILED: frozen tensors moved, a selected layer did not train, or a loss did not fall")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
