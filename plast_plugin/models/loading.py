"""Loading a model for `plast select`: the official LLaVA format (`model_type llava*`, needs the
`llava` package, i.e. the training env), transformers' llava-hf and LLaVA-NeXT (llava-v1.6-*-hf),
the transformers 5 vision-language families (Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, InternVL, with
their processor), or any causal LM."""

from __future__ import annotations

from pathlib import Path

import torch

from plast_plugin.errors import PlastError
from plast_plugin.models.model_source import (HF_MODEL_CLASSES, HF_VLM_FAMILY_MODEL_TYPES, checkpoint_kind,
                                             read_config)

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp64": torch.float64, "float64": torch.float64}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PlastError(f"--device {device}: no CUDA device is available here; use --device cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise PlastError(f"--dtype {dtype}: use one of auto, {', '.join(sorted(DTYPES))}")
    return DTYPES[dtype]


def _dtype_kwarg(torch_dtype) -> dict:
    """transformers 5 renamed `torch_dtype` to `dtype`; 4.37 knows only the old name."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"dtype": torch_dtype} if major >= 5 else {"torch_dtype": torch_dtype}


def _processor(path: str, hub: dict):
    """The folder's ``AutoProcessor``, or None where the folder holds none (then the probe runs the
    questions as text only, and refuses images with the fix)."""
    from transformers import AutoProcessor, ProcessorMixin

    try:
        processor = AutoProcessor.from_pretrained(path, **hub)
    except OSError:  # no processor files (preprocessor_config.json): a tokenizer-only folder
        return None
    except (ValueError, ImportError, TypeError, AttributeError) as err:
        raise PlastError(f"--model {path}: its processor does not load here ({type(err).__name__}: {err}); "
                         "probe with --images off, or save a processor this transformers loads") from None
    # Without processor files AutoProcessor falls back to the tokenizer (or image processor) alone.
    return processor if isinstance(processor, ProcessorMixin) else None


def load_for_probe(path: str, device: str = "auto", dtype: str = "auto", revision: str | None = None):
    """-> (model, tokenizer, image_processor or None), model in eval mode on `device`. For Qwen2.5-VL,
    Qwen3-VL, LLaVA-OneVision and InternVL the third is the folder's processor (``AutoProcessor``).

    ``path`` is a local folder or a hub id (``revision`` pins it); the model class follows the
    checkpoint's own ``model_type``, read through the same resolution transformers uses."""
    from transformers import AutoTokenizer

    if path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().exists():
        raise PlastError(f"--model {path} does not exist; give a model folder or a Hugging Face hub name")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    config = read_config(path, revision)
    model_type = str(config.get("model_type") or "")
    kind = checkpoint_kind(config)
    hub = {"revision": revision} if revision else {}
    image_processor = None
    if kind == "official-llava":
        try:
            from llava.model import LlavaLlamaForCausalLM  # registers llava_llama
        except ImportError as err:
            raise PlastError(
                f"{path} is an official LLaVA checkpoint (model_type {model_type!r}); loading it needs "
                f"the `llava` package (the training environment), or convert it with "
                f"`plast export --to-hf` ({err})"
            ) from None
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=False, **hub)
        model = LlavaLlamaForCausalLM.from_pretrained(path, **hub, **_dtype_kwarg(torch_dtype))
        tower = model.get_vision_tower()
        if tower is not None:
            if not tower.is_loaded:
                tower.load_model()
            tower.to(dtype=torch_dtype)
            image_processor = tower.image_processor
    else:
        import transformers

        if kind in HF_VLM_FAMILY_MODEL_TYPES.values() and not hasattr(transformers, HF_MODEL_CLASSES[kind]):
            raise PlastError(
                f"{path} is a {HF_MODEL_CLASSES[kind]} checkpoint (model_type {model_type!r}); transformers "
                f"{transformers.__version__} does not have it: run `plast select` in the evaluation environment "
                f"(transformers 5)")
        if kind == "llava-next-hf" and not hasattr(transformers, HF_MODEL_CLASSES[kind]):
            raise PlastError(
                f"{path} is a LLaVA-NeXT checkpoint (model_type {model_type!r}); transformers "
                f"{transformers.__version__} has no LlavaNextForConditionalGeneration (added in 4.39): run "
                f"`plast select` in an environment with a newer transformers (the evaluation env)"
            )
        tokenizer = AutoTokenizer.from_pretrained(path, **hub)
        model_class = getattr(transformers, HF_MODEL_CLASSES[kind])
        model = model_class.from_pretrained(path, **hub, **_dtype_kwarg(torch_dtype))
        if kind in HF_VLM_FAMILY_MODEL_TYPES.values():
            # These families take their images (dynamic resolution, anyres, tiles) and their
            # chat template from the processor, which the probe drives.
            image_processor = _processor(path, hub)
        elif kind != "causal-lm":
            image_processor = transformers.AutoImageProcessor.from_pretrained(path, **hub)
    model.to(torch_device).eval()
    return model, tokenizer, image_processor
