"""Runs LLaVA's own ``train()`` the way ``train_mem.py`` does, for the tests.

Usage: python _driver.py {hook|module} <LLaVA arguments...>
- hook: ``from llava.train.train import train; train()`` (the .pth import hook does the rest).
- module: ``plast_plugin.llava.train.main()`` (explicit entry, works with PLAST_DISABLE_HOOK=1).

Test-only additions, none of them PLAST behaviour:
- ``torch.cuda.synchronize`` is a no-op without CUDA (LLaVA's DeepSpeed save calls it, docs/troubleshooting.md pitfall 8);
- the parameter names of the optimizer the scheduler is built on are written to $PLAST_TEST_OPTIMIZER_RECORD.
"""
import json
import os
import sys

import torch

torch.set_num_threads(1)
if not torch.cuda.is_available():
    torch.cuda.synchronize = lambda *args, **kwargs: None


def _record_optimizer():
    path = os.environ.get("PLAST_TEST_OPTIMIZER_RECORD")
    if not path:
        return
    from llava.train.llava_trainer import LLaVATrainer

    # create_scheduler receives the finished optimizer (after PLAST's guard), also under DeepSpeed.
    original = LLaVATrainer.create_scheduler

    def create_scheduler(self, num_training_steps, optimizer=None):
        optimizer = optimizer if optimizer is not None else self.optimizer
        names = {id(p): n for n, p in self.model.named_parameters()}
        groups = [[names.get(id(p), "?") for p in g["params"]] for g in optimizer.param_groups]
        with open(path, "w") as f:
            json.dump({"groups": groups}, f)
        return original(self, num_training_steps, optimizer)

    LLaVATrainer.create_scheduler = create_scheduler


if __name__ == "__main__":
    # The deepspeed launcher puts --local_rank=N first: find the mode wherever it is.
    mode = next(a for a in sys.argv[1:] if a in ("hook", "module"))
    sys.argv.remove(mode)
    _record_optimizer()
    if mode == "hook":
        from llava.train.train import train

        train()
    elif mode == "module":
        from plast_plugin.llava.train import main

        main()
    else:
        raise SystemExit(f"unknown mode {mode}")
