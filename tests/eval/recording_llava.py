"""lmms-eval's own ``llava_hf`` (chat) model, recording the ids that reach ``generate``.

Registered for tests through a throw-away ``lmms_eval.models`` entry point (see
``install_recording_llava``). Model args: those of ``llava_hf`` plus ``record=<jsonl>``; each
line holds the task, the doc's index, the ``input_ids`` given to ``generate`` and its
``max_new_tokens``. Everything else (messages, chat template, processor) is ``llava_hf``'s.
"""

import json

from lmms_eval.models.chat.llava_hf import LlavaHf
from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="plast_recording_llava", chat_class_path="plast_recording_llava.RecordingLlavaHf")


class RecordingLlavaHf(LlavaHf):
    is_simple = False

    def __init__(self, record: str, **kwargs):
        super().__init__(**kwargs)
        generate = self._model.generate

        def recording_generate(*args, **gen_kwargs):
            with open(record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"input_ids": gen_kwargs["input_ids"][0].tolist(),
                                     "max_new_tokens": gen_kwargs.get("max_new_tokens")}) + "\n")
            return generate(*args, **gen_kwargs)

        self._model.generate = recording_generate
