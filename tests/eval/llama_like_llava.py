"""Run in the *training* env: a tiny official-format LLaVA whose tokenizer normalises like LLaMA's.

``make_tiny_llava``'s sentencepiece model uses sentencepiece's default normaliser (NFKC, extra
whitespace removed), under which the slow tokenizer of transformers 4.37 drops "\\n" and
trailing spaces while the fast tokenizer of transformers 5.x keeps them; LLaMA's own model
uses the identity normaliser and keeps whitespace. With such a tokenizer the official
tokenization (prompt split at <image>) and the llava-hf processor's give the same ids, so the
whole text path can be compared. Usage: python llama_like_llava.py <out_root>; writes
<out_root>/llava.
"""

import sys
from pathlib import Path


def main(root: str) -> None:
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    from plast_plugin.testing.tiny_models import (TOKENIZER_TEXT, _filler_lines, build_llava_from_llama,
                                                  make_tiny_clip_vision, make_tiny_llama)

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(TOKENIZER_TEXT * 3 + _filler_lines()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(root / "sp"), vocab_size=512, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, split_digits=True, num_threads=1, minloglevel=2,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, shuffle_input_sentence=False)
    LlamaTokenizer(vocab_file=str(root / "sp.model"), legacy=True).save_pretrained(str(root / "tok"))
    make_tiny_llama(root / "llama", tokenizer_dir=root / "tok")
    make_tiny_clip_vision(root / "clip")
    build_llava_from_llama(root / "llama", root / "clip", root / "llava")


if __name__ == "__main__":
    main(sys.argv[1])
