"""lmms-eval's own chat classes for the vision-language families, recording the ids that reach
``generate``.

Registered for tests through a throw-away ``lmms_eval.models`` entry point (see
``install_recording_families`` in test_vlm_families_eval.py). Model args: those of the class plus
``record=<jsonl>``; each line holds the ``input_ids`` given to ``generate``. Everything else
(messages, chat template, image handling, processor) is the class's.
"""

import json

from lmms_eval.models.chat.internvl_hf import InternVLHf
from lmms_eval.models.chat.llava_hf import LlavaHf
from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL
from lmms_eval.models.chat.qwen3_vl import Qwen3_VL
from lmms_eval.models.registry_v2 import ModelManifest


def _record_generate(model, record: str) -> None:
    generate = model.generate

    def recording_generate(*args, **gen_kwargs):
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"input_ids": gen_kwargs["input_ids"][0].tolist()}) + "\n")
        return generate(*args, **gen_kwargs)

    model.generate = recording_generate


def _recording(base):
    class Recording(base):
        is_simple = False

        def __init__(self, record: str, **kwargs):
            super().__init__(**kwargs)
            _record_generate(self._model, record)

    Recording.__name__ = f"Recording{base.__name__}"
    return Recording


RecordingQwen2_5_VL = _recording(Qwen2_5_VL)
RecordingQwen3_VL = _recording(Qwen3_VL)
RecordingInternVLHf = _recording(InternVLHf)
RecordingLlavaHf = _recording(LlavaHf)

# lmms-eval class -> the manifest of its recording twin (model id plast_recording_<class>)
MANIFESTS = {name: ModelManifest(model_id=f"plast_recording_{name}",
                                 chat_class_path=f"plast_recording_families.{cls.__name__}")
             for name, cls in (("qwen2_5_vl", RecordingQwen2_5_VL), ("qwen3_vl", RecordingQwen3_VL),
                               ("internvl_hf", RecordingInternVLHf), ("llava_hf", RecordingLlavaHf))}
MANIFEST_QWEN2_5_VL = MANIFESTS["qwen2_5_vl"]
MANIFEST_QWEN3_VL = MANIFESTS["qwen3_vl"]
MANIFEST_INTERNVL_HF = MANIFESTS["internvl_hf"]
MANIFEST_LLAVA_HF = MANIFESTS["llava_hf"]
