"""``python -m plast_plugin.llava.train``: LLaVA's ``train()`` with PLAST, without the import hook.

Takes exactly the arguments of ``llava/train/train_mem.py`` plus the ``--plast_*`` flags, for
setups where the ``.pth`` hook cannot be used (``PLAST_DISABLE_HOOK=1``, a read-only
site-packages, an interpreter started with ``-S``). One extra flag, consumed here:
``--attn_implementation`` (default: ``flash_attention_2`` when CUDA and flash-attn are available,
as ``train_mem.py`` does; otherwise the transformers default).
Under DeepSpeed: ``deepspeed --module plast_plugin.llava.train ...``.
"""
from __future__ import annotations

import sys


def _pop_flag(argv: list[str], name: str):
    for i, item in enumerate(argv):
        if item == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
            return value
        if item.startswith(name + "="):
            del argv[i]
            return item.split("=", 1)[1]
    return None


def default_attn_implementation():
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        import flash_attn  # noqa: F401
    except Exception:
        return None
    return "flash_attention_2"


def main(argv=None) -> None:
    if argv is not None:
        sys.argv[1:] = list(argv)
    attn = _pop_flag(sys.argv, "--attn_implementation")
    if attn is None:
        attn = default_attn_implementation()
    elif attn.lower() in ("none", "default", ""):
        attn = None
    from plast_plugin.llava.hook import install

    install(force=True)  # patches llava.train.train when it is imported below
    from llava.train.train import train

    train(attn_implementation=attn)


if __name__ == "__main__":
    main()
