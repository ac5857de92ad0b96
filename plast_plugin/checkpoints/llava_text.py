"""How a converted llava-hf checkpoint turns chat messages into token ids, as LLaVA does.

Two parts the converter (:mod:`plast_plugin.checkpoints.hf_convert`) writes into the checkpoint:

- :data:`LLAVA_CHAT_TEMPLATE`: LLaVA-1.5's ``llava_v1`` conversation (``conv_vicuna_v1``:
  ``"<system> USER: <image>\\n<question> ASSISTANT:"``), with three rules that let an evaluation
  task lay out another LLaVA prompt through the same template (the plugin's ``vlmevalkit``
  protocol does, see :mod:`plast_plugin.eval.prompts`):

  * a ``system`` message replaces the system text (a space follows it, as ``conv_vicuna_v1``'s sep);
  * a user turn whose text already holds ``<image>`` gets no ``<image>\\n`` in front: the text
    places the image itself (the rule lmms-eval's string-prompt ``llava_hf`` uses too);
  * with ``add_generation_prompt``, a final assistant message is the start of the answer: it is
    written as ``"ASSISTANT: " + text`` with no end-of-sequence token and no second
    ``ASSISTANT:`` (VLMEvalKit's LLaVA class ends its prompt with ``"ASSISTANT: "``).

- :func:`split_like_tokenizer_image_token`: LLaVA tokenizes a prompt with
  ``tokenizer_image_token``, which splits the text at ``<image>`` and encodes each piece on its
  own with LLaMA's sentencepiece model, so every piece starts with sentencepiece's "▁" prefix
  (``" What"`` after the image becomes ``"▁▁What"``). transformers 5 converts the sentencepiece
  model to a ``Metaspace`` pre-tokenizer that adds "▁" only where a piece does not already begin
  with a space (``"▁What"``) or only to the first piece (``legacy: false``, LLaVA-1.5's setting):
  one token fewer after ``<image>``. The tokenizer written by the converter prepends "▁" to every
  piece between special tokens instead, so the processor's tokenization of the whole prompt
  equals ``tokenizer_image_token``'s.
"""

from __future__ import annotations

LLAVA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the user's questions.")

LLAVA_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system=\"" + LLAVA_V1_SYSTEM.replace('"', '\\"') + "\") -%}"
    "{%- for message in messages if message['role'] == 'system' -%}"
    "{%- if message['content'] is string -%}{%- set ns.system = message['content'] -%}"
    "{%- else -%}{%- set ns.system = message['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join(' ') -%}{%- endif -%}{%- endfor -%}"
    "{{- ns.system + ' ' -}}"
    "{%- set turns = messages | rejectattr('role', 'equalto', 'system') | list -%}"
    "{%- for message in turns -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
    "{%- else -%}{%- set parts = namespace(text='', images='') -%}"
    "{%- for part in message['content'] if part['type'] == 'text' -%}"
    "{%- set parts.text = parts.text + part['text'] -%}{%- endfor -%}"
    "{%- if '<image>' not in parts.text -%}"
    "{%- for part in message['content'] if part['type'] == 'image' -%}"
    "{%- set parts.images = parts.images + '<image>\\n' -%}{%- endfor -%}{%- endif -%}"
    "{%- set text = parts.images + parts.text -%}{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{- 'USER: ' + text + ' ' -}}"
    "{%- elif loop.last and add_generation_prompt -%}{{- 'ASSISTANT: ' + text -}}"
    "{%- else -%}{{- 'ASSISTANT: ' + text + eos_token -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and (not turns or turns[-1]['role'] != 'assistant') -%}"
    "{{- 'ASSISTANT:' -}}{%- endif -%}"
)


def split_like_tokenizer_image_token(tokenizer):
    """`tokenizer`, or a copy whose pieces between special tokens each get sentencepiece's "▁"
    prefix (see the module docstring). Only a LLaMA-style tokenizer (a ``Metaspace``
    pre-tokenizer) changes; a byte-level BPE (GPT-2, SmolLM2) already encodes each piece alone."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer
    from tokenizers import Tokenizer, normalizers, pre_tokenizers

    metaspace = backend.pre_tokenizer
    if not isinstance(metaspace, pre_tokenizers.Metaspace) or backend.normalizer is not None:
        return tokenizer
    from transformers import PreTrainedTokenizerFast

    copy = Tokenizer.from_str(backend.to_str())
    marker = metaspace.replacement
    copy.normalizer = normalizers.Sequence([normalizers.Prepend(marker), normalizers.Replace(" ", marker)])
    copy.pre_tokenizer = None
    special = {name: getattr(tokenizer, name) for name in ("bos_token", "eos_token", "unk_token", "pad_token")
               if getattr(tokenizer, name, None) is not None}
    extra = [t for t in getattr(tokenizer, "additional_special_tokens", None) or []
             if t not in special.values()]
    return PreTrainedTokenizerFast(tokenizer_object=copy, model_max_length=tokenizer.model_max_length,
                                   padding_side=tokenizer.padding_side, additional_special_tokens=extra, **special)
