"""A conversation through the model's own chat template, split into prompt and answer text: what the
Hugging Face Trainer path trains on (``trainers.hf_data``, loss on the answer only) and what
``translation_loss`` scores HF models with, so both see the same tokens."""
from __future__ import annotations

from plast_plugin.errors import PlastError

IGNORE_INDEX = -100  # label of a token the loss skips (transformers' and LLaVA's)


class ChatRenderer:
    """Prompt and answer text of one conversation through the model's chat template."""

    def __init__(self, processor):
        self.processor = processor
        if getattr(processor, "chat_template", None):
            self.apply = processor.apply_chat_template
        elif getattr(getattr(processor, "tokenizer", None), "chat_template", None):
            self.apply = processor.tokenizer.apply_chat_template
        else:
            raise PlastError("the model has no chat template (neither its processor nor its tokenizer); set one "
                             "with processor.chat_template = ... and save it next to the model")

    def render(self, question: str, answer: str, with_image: bool) -> tuple[str, str]:
        user = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        prompt = self.apply(messages[:1], add_generation_prompt=True, tokenize=False)
        full = self.apply(messages, tokenize=False)
        if full.startswith(prompt):
            return prompt, full[len(prompt):]
        # Some templates open the assistant turn of a rendered conversation otherwise than the
        # generation prompt (LLaVA-OneVision-hf: "assistant \n" there, "assistant\n" here). The model
        # answers after the generation prompt, so it learns the answer, as the template ends the turn,
        # after that prompt.
        at = full.rfind(answer) if answer else -1
        if at < 0:
            raise PlastError(f"the chat template renders the conversation ({full!r}) neither as the prompt "
                             f"({prompt!r}) followed by the answer nor with the answer ({answer!r}) in it; "
                             f"cannot put the loss on the answer only")
        return prompt, full[at:]

    def answer_ids(self, prompt: str, answer_text: str) -> list[int]:
        """The answer's tokens as the tokenizer splits the whole rendered conversation: a sentencepiece
        tokenizer given the answer alone starts it with a word-boundary piece ("▁") that the
        conversation never has. The answer alone where the conversation's tokens do not begin with the
        prompt's (a token spanning the boundary)."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(prompt + answer_text, add_special_tokens=False)["input_ids"]
        if full_ids[: len(prompt_ids)] == prompt_ids:
            return list(full_ids[len(prompt_ids):])
        return list(tokenizer(answer_text, add_special_tokens=False)["input_ids"])

    def text_ids(self, question: str, answer: str, max_length: int) -> tuple[list[int], list[int]]:
        """Token ids and labels (IGNORE_INDEX on the prompt) of a text-only conversation, tokenized as the
        HF Trainer path (``trainers.hf_data``) tokenizes it: the prompt with the tokenizer's special
        tokens, the answer as ``answer_ids`` splits it."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        prompt, answer_text = self.render(question, answer, with_image=False)
        prompt_ids = list(tokenizer(prompt)["input_ids"])
        answer_ids = self.answer_ids(prompt, answer_text)
        return ((prompt_ids + answer_ids)[:max_length],
                ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length])
