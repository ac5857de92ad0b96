"""Installed as ``sitecustomize`` for the Qwen evaluation tests: imports ``qwen_vl_utils`` with inert
``torchvision`` names standing in, then takes them away again.

lmms-eval's ``qwen2_5_vl`` and ``qwen3_vl`` classes hand every image to
``qwen_vl_utils.process_vision_info``. That module imports torchvision at its top, but its image path
(``fetch_image``: ``smart_resize`` and a PIL resize) uses none of it; torchvision serves its video
readers only. The only torchvision wheels PyPI has for Linux are CUDA builds that do not load beside
the CPU torch of the eval environment (``operator torchvision::nms does not exist``), so the
environment has none, and ``plast eval --model qwen2_5_vl`` says so and stops (a user's GPU machine
has torchvision). Here ``qwen_vl_utils`` is imported once with stand-ins whose every use raises, so
the real lmms-eval class, the real ``qwen_vl_utils`` image code, the model and its processor all
run; the stand-ins leave ``sys.modules`` afterwards, so transformers still finds no torchvision and
picks its PIL image processors as it does without this file.
"""

import sys
import types


class _Unavailable:
    """Any attribute of a torchvision stand-in: raises on use (a video path reached it)."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        raise RuntimeError(f"torchvision is not installed here: {self._name}.{attr} was used")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"torchvision is not installed here: {self._name} was called")


def _stand_in(name):
    module = types.ModuleType(name)

    def attribute(attr):  # PEP 562; dunders stay missing (torch's import walks sys.modules for them)
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{name}.{attr}")

    module.__getattr__ = attribute
    return module


_NAMES = ("torchvision", "torchvision.io", "torchvision.transforms")
if "torchvision" not in sys.modules:
    import torch  # noqa: F401  (its own import, before any stand-in exists)

    for _name in _NAMES:
        sys.modules[_name] = _stand_in(_name)
    sys.modules["torchvision"].io = sys.modules["torchvision.io"]
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    try:
        import qwen_vl_utils  # noqa: F401  (kept in sys.modules with its references to the stand-ins)
    finally:
        for _name in _NAMES:
            del sys.modules[_name]
