"""PLAST for the official LLaVA training script (haotian-liu/LLaVA; same seam in LLaVA-NeXT).

Three ways in, all equivalent:

- the import hook installed with the package (``plast-llava-hook.pth``): patches
  ``llava.train.train`` right after it is imported, so the unmodified
  ``deepspeed llava/train/train_mem.py --plast_layers auto ...`` works. ``PLAST_DISABLE_HOOK=1``
  turns it off.
- ``python -m plast_plugin.llava.train ...``: the same arguments, patching explicitly.
- ``patches/llava-plast.patch``: a small explicit patch for a LLaVA checkout.

This package must stay cheap to import: the hook imports it in every interpreter of the env.
Nothing here imports torch, transformers or llava at module level.
"""
