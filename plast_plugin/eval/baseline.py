"""A like-for-like baseline for `plast eval --baseline`: the official LLaVA checkpoint converted by
the same ``plast export --to-hf`` as the tuned model. The hub's ``llava-hf/llava-1.5-7b-hf`` came
from another converter (other new embedding rows and preprocessing), so a delta against it would
mix the two conversions into the PLAST gain (docs/evaluation.md).

For the vision-language families transformers 5 ships (Qwen2.5-VL, Qwen3-VL, InternVL,
LLaVA-OneVision) there is no conversion: the baseline is another model of the same family (a folder
or hub id, typically the one the tuned model started from), evaluated through the same lmms-eval
class.
"""

from __future__ import annotations

import sys
from pathlib import Path

from plast_plugin.errors import PlastError
from plast_plugin.json_files import read_json_object

CONVERSION_RECORD = "plast_conversion.json"  # written by hf_convert.convert_to_hf


def _converted_from(folder: Path) -> str | None:
    record = folder / CONVERSION_RECORD
    return read_json_object(record, "conversion record").get("source") if record.is_file() else None


def prepare_baseline(source: str, out_dir, model: str | None = None, dry_run: bool = False,
                     model_kind: str | None = None) -> Path | str:
    """The model to evaluate as the baseline: for a tuned model of a vision-language family
    (`model_kind`, a checkpoint kind of ``HF_VLM_FAMILY_MODEL_TYPES``), `source` itself, which must be
    of the same family; else the llava-hf folder: `source` converted into `out_dir` (reused when
    `out_dir` already holds the conversion of the same checkpoint), or `source` itself when it is
    already a conversion made by ``plast export --to-hf``."""
    from plast_plugin.models.model_source import HF_VLM_FAMILY_MODEL_TYPES, checkpoint_kind, local_dir, read_config

    if model_kind in HF_VLM_FAMILY_MODEL_TYPES.values():
        config = read_config(source)  # a folder or a hub id; a missing one is one clear error here
        if checkpoint_kind(config) != model_kind:
            raise PlastError(f"--baseline {source}: model_type {config.get('model_type')!r} is not of the model's "
                             f"family ({model_kind}); give a {model_kind} model, e.g. the one the model was tuned from")
        print(f"baseline: {source} ({model_kind}), evaluated as the model is")
        return source

    out_dir = Path(out_dir)
    folder = local_dir(source)  # a folder, or a hub id's snapshot (one clear error when neither)
    model_type = read_config(str(folder)).get("model_type")
    if model_type == "llava":
        if _converted_from(folder) is None:
            raise PlastError(
                f"--baseline {source} is a llava-hf model converted by another tool (no {CONVERSION_RECORD}), "
                "e.g. the hub's llava-hf/llava-1.5-7b-hf: its embeddings and image preprocessing differ from "
                "`plast export --to-hf`, so the delta would mix conversions into the PLAST gain. Pass the "
                "official checkpoint (liuhaotian/llava-v1.5-7b) instead")
        return folder
    if checkpoint_kind({"model_type": model_type}) != "official-llava":
        raise PlastError(f"--baseline {source}: model_type {model_type!r} is not an official LLaVA checkpoint "
                         "(llava_llama)")
    if model and Path(model).is_dir() and _converted_from(Path(model)) is None:
        print(f"plast eval: warning: {model} has no {CONVERSION_RECORD}: it was not converted by `plast export "
              "--to-hf`, so the baseline and the model went through different conversions", file=sys.stderr)
    if out_dir.exists():
        done = _converted_from(out_dir)
        if done is not None and Path(done) == folder.resolve():
            print(f"baseline: reusing the conversion of {folder} in {out_dir}")
            return out_dir
        raise PlastError(f"{out_dir} exists and is not the conversion of {folder}; remove it or choose "
                         "another --output")
    print(f"baseline: converting {folder} with plast export --to-hf into {out_dir}", flush=True)
    if dry_run:
        return out_dir
    from plast_plugin.checkpoints.hf_convert import convert_to_hf

    return Path(convert_to_hf(folder, out_dir))
