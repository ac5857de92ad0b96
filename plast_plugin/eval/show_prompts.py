"""``plast eval --show-prompts N``: the exact text and token ids a model receives.

For the first N rows of each task, the doc goes through the tasks' own hooks
(:mod:`plast_plugin.eval.lmms_tasks`: the rows as VLMEvalKit reads them, the protocol's messages in
the model's chat layout) and then through what lmms-eval's chat class (``llava_hf``, ``qwen2_5_vl``,
``qwen3_vl``, ``internvl_hf``) does with them: the processor's chat template
(``apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``; ``qwen3_vl`` first
puts its ``system_prompt`` turn before them) and the processor on that text and the image, with the
class's image arguments (:data:`CLASS_ARGS`, or those given in ``--model-args``): the Qwen classes load
the processor with their ``min_pixels`` / ``max_pixels`` and resize the image with
``qwen_vl_utils.process_vision_info`` first, ``internvl_hf`` passes its ``min_patches`` /
``max_patches``. The run of image tokens the processor puts in place of the image placeholder (one
per image feature) is printed as one entry ``"<image>*N"``, where LLaVA's ``tokenizer_image_token``
has its single placeholder.
"""

from __future__ import annotations

import itertools
import json

from plast_plugin.errors import PlastError

IMAGE_RUN = "<image>*{}"
# The lmms-eval chat classes whose prompt this module reproduces.
CHAT_CLASSES = ("llava_hf", "qwen2_5_vl", "qwen3_vl", "internvl_hf")
# The defaults of lmms-eval 0.7.3's class arguments that shape the prompt: the Qwen classes' pixel
# bounds, internvl_hf's tile bounds, and the system turn qwen3_vl puts before the task's messages
# (qwen2_5_vl gives none: the Qwen2.5-VL template writes its own).
CLASS_ARGS = {
    "qwen2_5_vl": {"min_pixels": 256 * 28 * 28, "max_pixels": 1605632},
    "qwen3_vl": {"min_pixels": 256 * 28 * 28, "max_pixels": 1605632, "system_prompt": "You are a helpful assistant."},
    "internvl_hf": {"min_patches": 1, "max_patches": 12},
}


def collapse_image_run(ids: list[int], image_index: int) -> list:
    """`ids` with each run of `image_index` as one ``"<image>*N"`` entry."""
    out: list = []
    for token, run in itertools.groupby(int(i) for i in ids):
        if token == image_index:
            out.append(IMAGE_RUN.format(len(list(run))))
        else:
            out.extend(run)
    return out


def protocol_problems(processor) -> list[str]:
    """Why this llava-hf processor would not give the protocols' token ids (empty: it does)."""
    from plast_plugin.checkpoints.llava_text import LLAVA_CHAT_TEMPLATE

    problems = []
    if getattr(processor, "chat_template", None) != LLAVA_CHAT_TEMPLATE:
        problems.append("its chat template is not the one plast export --to-hf writes (the protocols' system "
                        "text, image position and trailing space need it)")
    backend = getattr(getattr(processor, "tokenizer", None), "backend_tokenizer", None)
    if backend is not None and type(backend.pre_tokenizer).__name__ == "Metaspace":
        problems.append("its tokenizer encodes the text after <image> without sentencepiece's '▁' prefix, unlike "
                        "LLaVA's tokenizer_image_token (one token fewer after the image)")
    return problems


def class_args(model: str, model_args: str = "") -> dict:
    """:data:`CLASS_ARGS` of lmms-eval's `model` class, with those `model_args` (``k=v,...``) sets."""
    given = dict(item.split("=", 1) for item in (model_args or "").split(",") if "=" in item)
    return {key: type(default)(given.get(key, default)) for key, default in CLASS_ARGS.get(model, {}).items()}


def load_processor(pretrained: str, model: str = "llava_hf", model_args: str = ""):
    """The processor as lmms-eval's `model` class loads it (the Qwen classes set its pixel bounds)."""
    from transformers import AutoProcessor

    if model in ("qwen2_5_vl", "qwen3_vl"):
        args = class_args(model, model_args)
        return AutoProcessor.from_pretrained(pretrained, max_pixels=args["max_pixels"], min_pixels=args["min_pixels"])
    return AutoProcessor.from_pretrained(pretrained)


def model_prompt(processor, doc: dict, model: str = "llava_hf", model_args: str = "") -> tuple[str, list[int]]:
    """(text, input ids) lmms-eval's chat class `model` gives the model for `doc`, done as that class
    does it (batch size 1)."""
    from plast_plugin.eval.lmms_tasks import doc_to_messages, doc_to_visual

    args = class_args(model, model_args)
    messages = doc_to_messages(doc)
    if model == "qwen3_vl":
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": args["system_prompt"]}]})
    if model in ("qwen2_5_vl", "qwen3_vl"):
        from qwen_vl_utils import process_vision_info  # lmms-eval's dependency for these classes

        # ChatMessages.to_hf_messages: an image part is {"type": "image", "image": <PIL image>}
        hf_messages = [{"role": m["role"], "content": [{"type": "image", "image": c["url"]} if c["type"] == "image"
                                                       else c for c in m["content"]]} for m in messages]
        text = processor.apply_chat_template([hf_messages], tokenize=False, add_generation_prompt=True)[0]
        patch = {"image_patch_size": 16} if model == "qwen3_vl" else {}
        images = process_vision_info([hf_messages], **patch)[0]
        resize = {"do_resize": False} if model == "qwen3_vl" else {}  # qwen3_vl: qwen_vl_utils' size is final
        inputs = processor(text=[text], images=images, return_tensors="pt", **resize)
        return text, inputs["input_ids"][0].tolist()
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(images=doc_to_visual(doc), text=text, return_tensors="pt", **args)
    return text, inputs["input_ids"][0].tolist()


def _task_docs(task: str, protocol: str, rows: int, layout: str = "llava-1.5") -> list[dict]:
    from plast_plugin.eval.lmms_tasks import vlmevalkit_docs
    from plast_plugin.eval.parrot_data import load_parrot_task

    bench, lang = task.rsplit("_", 1)
    data = load_parrot_task(bench, lang)
    return [{**d, "image": {"bytes": d["image"]}, "protocol": protocol, "layout": layout,
             "source_md5": data.identity.md5}
            for d in vlmevalkit_docs(data)[:rows]]


def image_token_id(processor) -> int:
    """The id of the token the processor repeats once per image feature."""
    token_id = getattr(processor, "image_token_id", None)
    if token_id is None:
        token_id = processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", None) or "<image>")
    return int(token_id)


def show_prompts(pretrained: str | None, tasks: list[str], protocol: str, rows: int, model: str = "llava_hf",
                 layout: str = "llava-1.5", model_args: str = "") -> None:
    """Print, per task, the first `rows` prompts as text and (for lmms-eval's chat classes of
    :data:`CHAT_CLASSES`) the chat-templated text and token ids."""
    from plast_plugin.eval.lmms_tasks import doc_to_text

    processor = None
    if model in CHAT_CLASSES:
        if not pretrained:
            raise PlastError("--show-prompts needs the model (its processor tokenizes the prompt)")
        processor = load_processor(pretrained, model, model_args)
        if layout == "llava-1.5":
            for problem in protocol_problems(processor):
                print(f"warning: {pretrained}: {problem}; convert the checkpoint again with plast export --to-hf")
        image_index = image_token_id(processor)
    for task in tasks:
        for doc in _task_docs(task, protocol, rows, layout):
            shown_layout = "" if layout == "llava-1.5" else f", chat layout {layout}"  # LLaVA-1.5's is the default
            print(f"== {task} row {doc['row']} (index {doc['index']}), protocol {protocol}{shown_layout}")
            if processor is None:
                print(f"text (the model's own template is applied by lmms-eval; no token ids without "
                      f"{', '.join(CHAT_CLASSES)}):")
                print(json.dumps(doc_to_text(doc), ensure_ascii=False))
                continue
            text, ids = model_prompt(processor, doc, model, model_args)
            print("text: " + json.dumps(text, ensure_ascii=False))
            collapsed = collapse_image_run(ids, image_index)
            print(f"ids ({len(ids)}): " + json.dumps(collapsed))
            print("tokens: " + json.dumps(_pieces(processor.tokenizer, collapsed), ensure_ascii=False))


def _pieces(tokenizer, collapsed: list) -> list:
    return [entry if isinstance(entry, str) else tokenizer.convert_ids_to_tokens(entry) for entry in collapsed]


def expand_tasks(names: list[str]) -> list[str]:
    """Group names (``mmmb``) as their per-language tasks."""
    from plast_plugin.data.languages import PARROT_LANGUAGES
    from plast_plugin.eval.parrot_data import BENCHMARKS

    return [t for name in names for t in ([f"{name}_{lang}" for lang in PARROT_LANGUAGES]
                                          if name in BENCHMARKS else [name])]

