"""LLaVA's own LoRA path as a reference alternative (not budget-matched) for `plast ablate`.

A LoRA run is LLaVA's ``train()`` with ``--lora_enable``: peft's LoRA on every linear layer of the
language model (``find_all_linear_names``: q/k/v/o and gate/up/down; never ``lm_head``, the
projector or the vision tower), the projector trained in full, everything else frozen. It saves
``adapter_config.json`` + ``adapter_model.safetensors`` (the LoRA tensors), ``non_lora_trainables.bin``
(every other trained tensor: the projector) and the model's ``config.json``, no base weights.
It is scored after LLaVA's own merge, ``llava.model.builder.load_pretrained_model``, the way
LLaVA's evaluation scripts load a LoRA checkpoint.

Like the rest of this package, nothing here imports torch, transformers or llava at module level.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from plast_plugin.errors import PlastError

# LLaVA-1.5's LoRA recipe, scripts/v1_5/finetune_lora.sh in haotian-liu/LLaVA:
# --lora_enable True --lora_r 128 --lora_alpha 256 --mm_projector_lr 2e-5 (with --learning_rate 2e-4).
LORA_1_5 = {"lora_r": 128, "lora_alpha": 256}

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # peft's safe and legacy names
NON_LORA_TRAINABLES = "non_lora_trainables.bin"

# load_pretrained_model picks its LoRA branch from the model *name*: it must contain both words.
_BUILDER_MODEL_NAME = "llava-lora"


def lora_flags(r: int = LORA_1_5["lora_r"], alpha: int = LORA_1_5["lora_alpha"]) -> list[str]:
    """The LLaVA training flags a lora run adds to the ablation's shared training arguments.

    ``--mm_projector_lr`` is deliberately not set. The ablation's measures are text-only, so the
    projector's rate enters no score; the recipe's 2e-5 is an absolute rate tuned next to its
    LoRA rate of 2e-4 and would be wrong beside whatever ``--learning_rate`` the ablation shares
    across alternatives; and left unset, LLaVA trains the projector at the run's learning rate,
    exactly as the ``full`` run does, so ``full`` and ``lora`` differ only in how the language model
    is trained. A user who wants it passes ``--mm_projector_lr`` in the shared arguments."""
    for name, value in (("r", r), ("alpha", alpha)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlastError(f"LoRA {name}={value!r}: give a positive integer (LLaVA-1.5 uses "
                             f"r={LORA_1_5['lora_r']}, alpha={LORA_1_5['lora_alpha']})")
    return ["--lora_enable", "True", "--lora_r", str(r), "--lora_alpha", str(alpha)]


def _adapter_files(train_dir) -> tuple[Path, Path, Path]:
    """(adapter config, adapter weights, non-LoRA trainables) of a LoRA run's output folder, or a
    PlastError naming the folder and every missing file."""
    folder = Path(train_dir)
    if not folder.is_dir():
        raise PlastError(f"LoRA run folder {folder} does not exist; give the --output_dir of a "
                         f"LLaVA run trained with --lora_enable True")
    weights = next((folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()), None)
    missing = [name for name, present in ((ADAPTER_CONFIG, (folder / ADAPTER_CONFIG).is_file()),
                                           (" or ".join(ADAPTER_WEIGHTS), weights is not None),
                                           (NON_LORA_TRAINABLES, (folder / NON_LORA_TRAINABLES).is_file()))
               if not present]
    if missing:
        raise PlastError(f"{folder} is not a finished LLaVA LoRA run: missing {', '.join(missing)}. "
                         f"LLaVA writes them at the end of a run with --lora_enable True; train (or "
                         f"finish) that run, or give its --output_dir")
    return folder / ADAPTER_CONFIG, weights, folder / NON_LORA_TRAINABLES


def lora_trainable_params(train_dir) -> int:
    """The number of parameters the LoRA run trained, counted in what LLaVA saved: every adapter
    tensor (LoRA A and B matrices) plus every non-LoRA tensor that had ``requires_grad`` (LLaVA's
    ``non_lora_trainables.bin``: the projector)."""
    from plast_plugin.checkpoints.weights import count_elements

    _, weights, non_lora = _adapter_files(train_dir)
    return count_elements([weights, non_lora])


@contextlib.contextmanager
def _builder_loads_in(builder, torch_dtype):
    """Make ``load_pretrained_model`` load the base in ``torch_dtype``. It hard-codes
    ``torch_dtype=torch.float16`` (overriding a caller's ``torch_dtype`` kwarg), which on CPU is
    slow, rounds the base and the merged delta, and differs from how every other alternative is
    scored. Only the class it calls ``from_pretrained`` on is replaced, for this call; every other
    step (non-LoRA weights, peft adapter, ``merge_and_unload``) is LLaVA's own code."""
    llava_class = builder.LlavaLlamaForCausalLM

    class _InDtype:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            kwargs["torch_dtype"] = torch_dtype
            return llava_class.from_pretrained(*args, **kwargs)

    builder.LlavaLlamaForCausalLM = _InDtype
    try:
        yield
    finally:
        builder.LlavaLlamaForCausalLM = llava_class


def load_merged_lora(train_dir, base_path, device: str = "cpu", dtype: str = "fp32"):
    """-> (model, tokenizer): the LoRA run in ``train_dir`` merged into ``base_path`` by LLaVA's own
    ``load_pretrained_model`` (base + ``non_lora_trainables.bin`` + peft adapter, then
    ``merge_and_unload()``), as a plain ``LlavaLlamaForCausalLM`` in eval mode on ``device`` in
    ``dtype`` (vision tower included). ``device``/``dtype`` take what ``plast ablate`` takes
    (``auto``, ``cpu``/``cuda``; ``auto``, ``fp32``, ``bf16``, ``fp16``)."""
    import torch

    from plast_plugin.models.loading import resolve_device, resolve_dtype

    _adapter_files(train_dir)
    if not (Path(base_path) / "config.json").is_file():
        raise PlastError(f"LoRA base model {base_path} has no config.json; give the folder the LoRA "
                         f"run was trained from (its --model_name_or_path)")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    from llava.model import builder

    # fp16 is what the builder does itself; any other dtype goes through the one-class override.
    override = contextlib.nullcontext() if torch_dtype == torch.float16 else _builder_loads_in(builder, torch_dtype)
    with override:
        # Any device but plain "cuda" makes the builder place everything there (device_map {"": device});
        # plain "cuda" (what "auto" resolves to on a GPU machine) keeps its device_map "auto".
        tokenizer, model, _, _ = builder.load_pretrained_model(
            model_path=str(train_dir), model_base=str(base_path), model_name=_BUILDER_MODEL_NAME,
            device=str(torch_device))
    tower = model.get_vision_tower()
    if tower is not None:  # the builder loads the tower in its own default dtype (fp32 on CPU)
        tower.to(device=torch_device, dtype=torch_dtype)
    return model.eval(), tokenizer
