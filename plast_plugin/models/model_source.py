"""Where a model lives: a local folder, else a Hugging Face hub id resolved as transformers does
(the hub cache first; a download only when the hub is reachable and not switched off).

Every command that reads a model's config or files asks here, so a hub id works wherever a folder
does, and a missing id gets one clear error instead of a fall-back to the wrong model class.
"""
from __future__ import annotations

import os
from pathlib import Path

from plast_plugin.errors import PlastError


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _not_found(name: str, revision: str | None, err: Exception) -> PlastError:
    from huggingface_hub import constants

    at = f" at revision {revision}" if revision else ""
    if _offline():
        how = ("the hub is off (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set) and the Hugging Face cache "
               f"({constants.HF_HUB_CACHE}) has no copy; download it where the hub is reachable "
               f"(`huggingface-cli download {name}{' --revision ' + revision if revision else ''}`) and copy the "
               "cache here, or pass a local folder")
    else:
        how = ("check the spelling, pass a local folder, or log in (`huggingface-cli login`) for a "
               "gated or private model")
    return PlastError(f"model {name!r}{at}: not a local folder and not found on the hub: {how} "
                      f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")


def read_config(name_or_path: str, revision: str | None = None) -> dict:
    """The model's ``config.json`` as a dict, for a folder or a hub id (any model type, including
    ``llava_llama``, which transformers' AutoConfig does not know without the ``llava`` package)."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        config = local / "config.json"
        if not config.is_file():
            raise PlastError(f"{name_or_path}: the folder has no config.json; pass a model folder "
                             "(the one holding config.json and the weights)")
        from plast_plugin.json_files import read_json_object

        return read_json_object(config, "model config")
    import warnings

    from transformers import PretrainedConfig

    try:
        with warnings.catch_warnings():
            # transformers 4.37 passes huggingface_hub a deprecated argument; not the user's concern.
            warnings.simplefilter("ignore", FutureWarning)
            config, _ = PretrainedConfig.get_config_dict(name_or_path, revision=revision)
    except (OSError, ValueError) as err:
        raise _not_found(name_or_path, revision, err) from None
    return config


def local_dir(name_or_path: str, revision: str | None = None, cached_only: bool = False) -> Path:
    """A local folder holding the model's files: the folder itself, or the hub snapshot (from the
    cache; downloaded only when the hub is reachable and not switched off, never if ``cached_only``)."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, revision=revision, local_files_only=cached_only or _offline()))
    except Exception as err:  # huggingface_hub raises several types for "not there"
        raise _not_found(name_or_path, revision, err) from None


# transformers' own LLaVA ports; every other ``llava*`` model_type (llava_llama, llava_mistral,
# llava_qwen, ...) is the official LLaVA / LLaVA-NeXT code's format, which needs the `llava` package.
HF_LLAVA_MODEL_TYPES = {"llava": "llava-hf", "llava_next": "llava-next-hf"}
# The vision-language families transformers 5 ships: `plast select` probes them through their
# processor, PLAST freezes their decoder layers and names them for other trainers (plast export-config,
# the HF Trainer callback).
# ``llava_onevision`` is listed before the ``llava*`` prefix rule below: it is transformers' port.
HF_VLM_FAMILY_MODEL_TYPES = {"qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl",
                             "llava_onevision": "llava-onevision-hf", "internvl": "internvl-hf"}
# The transformers class that builds each kind of checkpoint but the official LLaVA's.
HF_MODEL_CLASSES = {"llava-hf": "LlavaForConditionalGeneration", "llava-next-hf": "LlavaNextForConditionalGeneration",
                    "causal-lm": "AutoModelForCausalLM",
                    "qwen2.5-vl": "Qwen2_5_VLForConditionalGeneration", "qwen3-vl": "Qwen3VLForConditionalGeneration",
                    "llava-onevision-hf": "LlavaOnevisionForConditionalGeneration",
                    "internvl-hf": "InternVLForConditionalGeneration"}


def checkpoint_kind(config: dict) -> str:
    """The one test of what a checkpoint is: ``official-llava`` (LLaVA's own code, model_type
    ``llava_*``), ``llava-hf`` / ``llava-next-hf`` (transformers' ports), one of the vision-language
    families of ``HF_VLM_FAMILY_MODEL_TYPES`` or ``causal-lm``."""
    kind = str(config.get("model_type") or "")
    if kind in HF_LLAVA_MODEL_TYPES:
        return HF_LLAVA_MODEL_TYPES[kind]
    if kind in HF_VLM_FAMILY_MODEL_TYPES:
        return HF_VLM_FAMILY_MODEL_TYPES[kind]
    if kind.startswith("llava"):
        return "official-llava"
    return "causal-lm"


def converted_from(name_or_path: str | None) -> list[str]:
    """The checkpoint a `plast export --to-hf` folder was converted from (its
    ``plast_conversion.json``), as another name of the same model; empty for any other model."""
    if not name_or_path:
        return []
    record = Path(str(name_or_path)).expanduser() / "plast_conversion.json"
    try:
        import json

        source = json.loads(record.read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError, AttributeError):
        return []
    return [source] if isinstance(source, str) and source else []
