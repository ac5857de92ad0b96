"""One `transformers.Trainer` run with `PlastCallback` under DeepSpeed, in a process of its own (DeepSpeed
initializes torch.distributed and accelerate's process-wide state, which must not leak into the test
process). Run by test_vlm_families_deepspeed.py with the environment the `deepspeed` launcher would set
for one local rank:

    python tests/eval/vlm_zero_driver.py FAMILY MODEL_DIR SELECTION DEEPSPEED_CONFIG OUT_DIR

Trains `vlm_training_util.ImageRows` for 3 steps and saves the model to OUT_DIR.
"""
import sys

import torch

# DeepSpeed's save calls torch.cuda.synchronize(), which fails without CUDA (docs/troubleshooting.md).
torch.cuda.synchronize = lambda *args, **kwargs: None

from vlm_training_util import make_trainer  # noqa: E402


def main(family, model, selection, config, out):
    _, trainer = make_trainer({"name": family, "path": model}, out, selection, deepspeed=config)
    trainer.train()
    trainer.save_model(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
