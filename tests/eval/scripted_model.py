"""A scripted lmms-eval model for tests: answers from a JSON file, records what it was asked.

Registered through lmms-eval's ``lmms_eval.models`` entry point by a throw-away dist-info
folder the test puts on PYTHONPATH (see ``test_lmms_cli.py``). Model args:
``answers=<json {task: {index: answer}}>,log=<jsonl written with prompt and image colour>``.
"""

import json

from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="plast_scripted", simple_class_path="plast_scripted_model.ScriptedModel")


class ScriptedModel(lmms):
    is_simple = True

    def __init__(self, answers: str, log: str = "", **kwargs):
        super().__init__()
        with open(answers, encoding="utf-8") as fh:
            self._answers = json.load(fh)
        self._log = log

    def generate_until(self, requests):
        out = []
        records = []
        for context, gen_kwargs, doc_to_visual, doc_id, task, split in [r.args for r in requests]:
            doc = self.task_dict[task][split][doc_id]
            visuals = doc_to_visual(doc)
            answer = self._answers.get(task, {}).get(str(doc["index"]), "")
            records.append({"task": task, "index": int(doc["index"]), "prompt": context,
                            "n_images": len(visuals), "colour": list(visuals[0].getpixel((0, 0))),
                            "size": list(visuals[0].size)})
            out.append(answer)
        if self._log:
            with open(self._log, "a", encoding="utf-8") as fh:
                for r in records:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError

    def generate_until_multi_round(self, requests):
        raise NotImplementedError
