"""The LLaVA-1.5 models and the cost model that scripts/bench_train.py measures (benchmark code,
kept out of the package).

Models: the official LLaVA module tree at a given shape, built without weights or hub access.
``build_llava(shape, device)`` constructs LLaVA's own ``LlavaLlamaForCausalLM`` (language model,
``mlp2x_gelu`` projector) with a ``CLIPVisionModel`` tower from configs alone:

- ``device="meta"``: no memory at all, for counting FLOPs and parameters of the 7B shape on a
  laptop (the cost model below);
- ``device="cuda"``: random weights created directly on the GPU in the requested dtype, for the
  GPU benchmark (no 2 x 27 GB of safetensors through the CPU, no fp32 copy).

LLaVA's ``CLIPVisionTower`` reads its config with ``CLIPVisionConfig.from_pretrained(name)`` and
its weights with ``CLIPVisionModel.from_pretrained`` in ``load_model()``. Here the config is
written to a temporary directory (so the tower's own constructor runs, offline), and
``load_model()`` is replaced by building ``CLIPVisionModel(config)`` on the target device: no
weight file and no hub is ever read.

Costs: what a LLaVA training step costs per method, counted FLOPs and a static memory model.

One setup function, ``prepare_for_training``, puts a LLaVA (from ``build_llava``) into the
state LLaVA's ``train()`` and the HF Trainer leave it in for each method, so that the counted
FLOPs (meta device, ``count_step_flops``) and the timed GPU steps (``scripts/bench_train.py
--shape llava7b --device cuda``) run the same code path:

- ``full``: LLaVA-1.5 fine-tuning (language model + projector train; the vision tower is frozen);
- ``plast``: ``freeze_for_plast`` on the selected layers, then PLAST's training integration
  (``short_backward.shorten_backward``) unless ``short_backward=False``, which keeps LLaVA's path;
- ``lora``: LLaVA's finetune_lora.sh recipe (r 128, alpha 256) on the language model's linear
  layers only (``model.layers.N.{self_attn,mlp}.*_proj``; LLaVA's own short-name list would also
  hit CLIP's ``q/k/v_proj``), plus the projector.

With checkpointing on, every method first gets LLaVA's ``enable_input_require_grads()`` and then
the Trainer's ``gradient_checkpointing_enable`` (reentrant: the default of transformers 4.37.2
with torch's default ``use_reentrant``).

Static memory per GPU (mixed precision as in LLaVA's DeepSpeed runs: bf16 weights and gradients,
fp32 master weights + Adam moments = 12 bytes per trainable parameter):

    weights   = 2 bytes x all parameters         (/ N GPUs under ZeRO-3)
    gradients = 2 bytes x trainable parameters   (/ N under ZeRO-2 and ZeRO-3)
    optimizer = 12 bytes x trainable parameters  (/ N under ZeRO-1, -2, -3)

"plain" is data parallelism without partitioning. Activations come from ``activation_profile``:
the bytes autograd saves in a forward pass, measured on the meta device, and from them an
estimate with checkpointing (kept layer inputs + one recomputed layer + the loss part). It is an
estimate, not a peak (no allocator, no temporary buffers): the GPU benchmark measures peaks.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace


@dataclass(frozen=True)
class ClipShape:
    layers: int
    hidden: int
    ffn: int
    heads: int
    image_size: int
    patch_size: int

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def config_dict(self) -> dict:
        # openai/clip-vit-large-patch14-336's vision config, with these sizes.
        return {
            "model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"],
            "hidden_size": self.hidden, "intermediate_size": self.ffn, "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads, "image_size": self.image_size, "patch_size": self.patch_size,
            "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 768,
            "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 1.0,
        }


@dataclass(frozen=True)
class LlavaShape:
    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    clip: ClipShape = field(repr=False)
    max_positions: int = 4096

    @property
    def image_tokens(self) -> int:
        return self.clip.image_tokens


CLIP_L_336 = ClipShape(layers=24, hidden=1024, ffn=4096, heads=16, image_size=336, patch_size=14)

SHAPES = {
    # liuhaotian/llava-v1.5-7b: Vicuna-7B (LLaMA-2 7B) + CLIP ViT-L/14-336 (576 image tokens).
    "llava7b": LlavaShape("llava7b", layers=32, hidden=4096, ffn=11008, heads=32, kv_heads=32, vocab=32000,
                          clip=CLIP_L_336),
    # liuhaotian/llava-v1.5-13b.
    "llava13b": LlavaShape("llava13b", layers=40, hidden=5120, ffn=13824, heads=40, kv_heads=40, vocab=32000,
                           clip=CLIP_L_336),
    # Same depth as 7B (so the 7B layer selections apply) at a width that runs on a CPU in seconds.
    "tiny": LlavaShape("tiny", layers=32, hidden=64, ffn=172, heads=4, kv_heads=4, vocab=512,
                       clip=ClipShape(layers=2, hidden=32, ffn=64, heads=2, image_size=56, patch_size=14),
                       max_positions=2048),
}


def get_shape(name: str) -> LlavaShape:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown shape {name!r}; choose one of {', '.join(SHAPES)}") from None


def llava_config(shape: LlavaShape, vision_tower: str, attn_implementation: str = "eager"):
    """LLaVA-1.5's config (``model_type llava_llama``) at ``shape``; ``vision_tower`` = a CLIP config dir."""
    from llava.model.language_model.llava_llama import LlavaConfig

    config = LlavaConfig(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, use_cache=False,
        mm_vision_tower=vision_tower, mm_hidden_size=shape.clip.hidden, mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_patch_merge_type="flat",
        mm_use_im_start_end=False, mm_use_im_patch_token=False, image_aspect_ratio="pad", use_mm_proj=True,
    )
    config._attn_implementation = attn_implementation
    return config


def build_llava(shape: LlavaShape | str, device="meta", dtype=None, attn_implementation: str = "eager"):
    """LLaVA's ``LlavaLlamaForCausalLM`` at ``shape`` on ``device``, vision tower attached and frozen
    (as ``train()`` leaves it); random weights (none at all on ``meta``). ``model.train()`` mode."""
    import torch
    from transformers import CLIPVisionModel

    from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM

    if isinstance(shape, str):
        shape = get_shape(shape)
    dtype = dtype or torch.float32
    previous_dtype = torch.get_default_dtype()
    with tempfile.TemporaryDirectory(prefix="plast_clip_config_") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(shape.clip.config_dict()))
        config = llava_config(shape, tmp, attn_implementation)
        torch.set_default_dtype(dtype)  # parameters are created in dtype: no fp32 copy on the GPU
        try:
            with torch.device(device):
                model = LlavaLlamaForCausalLM(config)
                tower = model.get_model().get_vision_tower()
                clip_config = tower.cfg_only  # CLIP keeps its eager attention (no sdpa in 4.37)
                # What CLIPVisionTower.load_model() does, minus reading weights from a file/hub.
                tower.vision_tower = CLIPVisionModel(clip_config)
                tower.vision_tower.requires_grad_(False)
                tower.is_loaded = True
        finally:
            torch.set_default_dtype(previous_dtype)
    model.config.mm_vision_tower = "openai/clip-vit-large-patch14-336" if shape.clip == CLIP_L_336 else "random"
    model.train()
    return model


def multimodal_inputs(model, batch: int, seq: int, device="meta", seed: int = 0):
    """A LLaVA-1.5 training batch of ``seq`` tokens per sample: one image (its ``image_tokens``
    features) then ``seq - image_tokens`` text tokens, loss on the text.

    Returns ``(images, input_ids, labels)`` as LLaVA's ``prepare_inputs_labels_for_multimodal``
    would see them after splicing, and ``embed(model, images, input_ids)`` builds the spliced
    ``inputs_embeds`` the same way (image features from ``encode_images``, text from
    ``embed_tokens``); the splice itself is data-dependent indexing, which the meta device cannot run.
    """
    import torch

    from llava.constants import IGNORE_INDEX

    tower = model.get_model().get_vision_tower()
    image_tokens = tower.num_patches
    if seq <= image_tokens:
        raise ValueError(f"seq {seq} must exceed the {image_tokens} image tokens")
    size = tower.config.image_size
    dtype = next(model.parameters()).dtype
    if str(device) == "meta":
        images = torch.empty(batch, 3, size, size, device=device, dtype=dtype)
        input_ids = torch.empty(batch, seq - image_tokens, device=device, dtype=torch.long)
        labels = torch.empty(batch, seq, device=device, dtype=torch.long)
        return images, input_ids, labels
    gen = torch.Generator(device="cpu").manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device=device, dtype=dtype)
    input_ids = torch.randint(3, model.config.vocab_size, (batch, seq - image_tokens), generator=gen).to(device)
    labels = torch.cat([torch.full((batch, image_tokens), IGNORE_INDEX), input_ids.cpu()], dim=1).to(device)
    return images, input_ids, labels


def embed(model, images, input_ids):
    """``inputs_embeds`` [batch, image_tokens + text, d]: image features first, then the text."""
    import torch

    image_features = model.encode_images(images)
    text = model.get_model().embed_tokens(input_ids)
    return torch.cat([image_features.to(text.dtype), text], dim=1)


METHODS = ("full", "plast", "lora")
ZERO_STAGES = ("plain", "zero2", "zero3")
WEIGHT_BYTES, GRAD_BYTES, OPTIMIZER_BYTES = 2, 2, 12
LORA_TARGETS = r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass(frozen=True)
class Setup:
    """One method at one setting."""

    method: str
    layers: tuple[int, ...] = ()
    gradient_checkpointing: bool = True
    short_backward: bool = True  # PLAST only: the integration's path (False: LLaVA's own)
    lora_r: int = 128
    lora_alpha: int = 256
    modules: str = "layer"  # PLAST only: which modules of the selected layers train

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.method == "plast" and not self.layers:
            raise ValueError("method 'plast' needs layers")


def prepare_for_training(model, setup: Setup, checkpoint_kwargs: dict | None = None):
    """Set ``requires_grad`` and checkpointing as LLaVA's ``train()`` + the Trainer do for ``setup``.

    Returns the model to train (a peft wrapper for LoRA). ``checkpoint_kwargs`` are passed on
    to ``torch.utils.checkpoint`` (e.g. ``preserve_rng_state=False`` on the meta device)."""
    extra = dict(checkpoint_kwargs or {})
    if setup.method == "full":
        model.requires_grad_(True)
        model.get_model().get_vision_tower().requires_grad_(False)
    elif setup.method == "plast":
        from plast_plugin.core.freeze import freeze_for_plast

        freeze_for_plast(model, list(setup.layers), setup.modules)
    else:
        model = _add_lora(model, setup)
    if setup.gradient_checkpointing:
        model.enable_input_require_grads()  # what LLaVA's train() does under checkpointing
        if setup.method == "plast":
            from plast_plugin.llava.short_backward import shorten_backward

            args = SimpleNamespace(gradient_checkpointing=True, gradient_checkpointing_kwargs=None,
                                   plast_short_backward=setup.short_backward)
            shorten_backward(model, args)
        # the HF Trainer at the start of train(); an empty kwargs dict means reentrant in torch 2.13
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True, **extra})
    return model


def _add_lora(model, setup: Setup):
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=setup.lora_r, lora_alpha=setup.lora_alpha, lora_dropout=0.05, bias="none",
                        target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    weight = model.get_model().embed_tokens.weight
    with torch.device(weight.device):  # adapters created where the model lives (meta: no memory)
        model = get_peft_model(model, config)
    model.to(weight.dtype)
    for param in model.get_base_model().get_model().mm_projector.parameters():  # as LLaVA's recipe
        param.requires_grad_(True)
    return model


def base_llava(model):
    """The LlavaLlamaForCausalLM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def training_step(model, images, input_ids, labels):
    """Forward + backward of one LLaVA-1.5 batch; returns the loss tensor."""
    loss = model(inputs_embeds=embed(base_llava(model), images, input_ids), labels=labels).loss
    loss.backward()
    return loss


@dataclass
class StepCount:
    setup: Setup
    flops: int  # forward + backward (+ recomputation) of one step
    trainable_params: int
    total_params: int
    per_module: dict = field(default_factory=dict, repr=False)


def count_step_flops(shape, setup: Setup, batch: int = 1, seq: int = 2048) -> StepCount:
    """Count one training step's FLOPs for ``setup`` at ``shape`` on the meta device (no memory,
    no weights; seconds on a CPU). Attention is eager (two batched matmuls per layer, counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build_llava(shape, device="meta", dtype=torch.bfloat16, attn_implementation="eager")
    model = prepare_for_training(model, setup, checkpoint_kwargs={"preserve_rng_state": False})
    images, input_ids, labels = multimodal_inputs(base_llava(model), batch, seq, device="meta")
    with FlopCounterMode(display=False) as counter:
        training_step(model, images, input_ids, labels)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # A trained parameter without gradient: the path under test is broken (docs/troubleshooting.md pitfall 3).
    if missing:
        raise RuntimeError(f"{setup}: {len(missing)} trainable parameters got no gradient, e.g. {missing[:3]}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return StepCount(setup, counter.get_total_flops(), trainable, total)


@dataclass(frozen=True)
class StaticMemory:
    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


def static_memory(total_params: int, trainable_params: int, stage: str, gpus: int) -> StaticMemory:
    """Bytes per GPU of weights, gradients and optimizer state (see the module docstring)."""
    if stage not in ZERO_STAGES:
        raise ValueError(f"stage {stage!r} is not one of {', '.join(ZERO_STAGES)}")
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    weights = WEIGHT_BYTES * total_params / (gpus if stage == "zero3" else 1)
    gradients = GRAD_BYTES * trainable_params / (gpus if stage in ("zero2", "zero3") else 1)
    optimizer = OPTIMIZER_BYTES * trainable_params / (gpus if stage != "plain" else 1)
    return StaticMemory(weights, gradients, optimizer)


@dataclass
class ActivationProfile:
    """Bytes autograd saves for backward during one forward *without* checkpointing, per decoder
    layer and outside them (embeddings, vision features, final norm, LM head, loss), measured on
    the meta device by a ``saved_tensors_hooks`` pack hook, each storage counted once, parameters
    and [S x S] attention matrices left out (FlashAttention-2, which LLaVA trains with, saves none)."""

    per_layer: list
    outside: int
    hidden_state: int  # one layer input [batch, seq, d]: what checkpointing keeps per layer
    checkpointed: tuple  # which layers the setup checkpoints when gradient checkpointing is on
    # Under checkpointing, what a layer without a graph of its own saves when LLaVA's input grads
    # give it one anyway (PLAST through LLaVA's path: the layers below the selection); 0 otherwise.
    input_grad_fill: int = 0

    @property
    def without_checkpointing(self) -> int:
        return sum(self.per_layer) + self.outside

    @property
    def with_checkpointing(self) -> int:
        """Estimate: the kept inputs of the checkpointed layers that have a graph, the outside
        part, and the larger of the unchecked (last) layer's saved tensors, which backward frees
        first, and one checkpointed layer recomputed at a time."""
        per_layer = [b or self.input_grad_fill for b in self.per_layer]
        kept = sum(self.hidden_state for i in self.checkpointed if per_layer[i] > 0)
        unchecked = sum(b for i, b in enumerate(per_layer) if i not in self.checkpointed)
        recompute = max((per_layer[i] for i in self.checkpointed), default=0)
        return kept + self.outside + max(unchecked, recompute)

    def scaled(self, factor: int) -> "ActivationProfile":
        """The profile at ``factor`` times the batch (saved bytes grow linearly with it)."""
        return ActivationProfile([b * factor for b in self.per_layer], self.outside * factor,
                                 self.hidden_state * factor, self.checkpointed, self.input_grad_fill * factor)


def activation_profile(shape, setup: Setup, batch: int = 1, seq: int = 2048) -> ActivationProfile:
    """Measure ``ActivationProfile`` for ``setup`` (see there); seconds on a CPU, no memory."""
    import dataclasses

    import torch
    from torch.autograd.graph import saved_tensors_hooks

    model = build_llava(shape, device="meta", dtype=torch.bfloat16, attn_implementation="eager")
    # Without checkpointing every layer with a graph saves what its backward needs; LLaVA adds
    # input grads only under checkpointing, so the layers below PLAST's lowest save nothing here.
    model = prepare_for_training(model, dataclasses.replace(setup, gradient_checkpointing=False))
    llava = base_llava(model)
    layers = llava.get_model().layers  # LLaVA's LLaMA decoder layers (peft-wrapped projections for LoRA)
    images, input_ids, labels = multimodal_inputs(llava, batch, seq, device="meta")
    per_layer, outside, current, seen = [0] * len(layers), [0], [None], set()
    params = {p.untyped_storage()._cdata for p in model.parameters()}

    def pack(tensor):
        storage = tensor.untyped_storage()
        square = tensor.dim() == 4 and tensor.shape[-1] == tensor.shape[-2] == seq
        if storage._cdata not in seen and storage._cdata not in params and not square:
            seen.add(storage._cdata)
            if current[0] is None:
                outside[0] += storage.nbytes()
            else:
                per_layer[current[0]] += storage.nbytes()
        return tensor

    handles = []
    for index, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(lambda m, a, i=index: current.__setitem__(0, i)))
        handles.append(layer.register_forward_hook(lambda m, a, o: current.__setitem__(0, None)))
    try:
        with saved_tensors_hooks(pack, lambda tensor: tensor):
            model(inputs_embeds=embed(llava, images, input_ids), labels=labels)
    finally:
        for handle in handles:
            handle.remove()
    last = len(layers) - 1
    unchecked = {last} if setup.method == "plast" and setup.short_backward else set()
    checkpointed = tuple(i for i in range(len(layers)) if i not in unchecked)
    hidden = batch * seq * llava.config.hidden_size * 2
    fill = 0
    if setup.method == "plast" and not setup.short_backward:
        # LLaVA's path: input grads give every layer a graph under checkpointing; a recomputed
        # layer below the selection then saves what a frozen layer above it saves.
        fill = max(b for i, b in enumerate(per_layer) if i not in setup.layers)
    return ActivationProfile(per_layer, outside[0], hidden, checkpointed, fill)
