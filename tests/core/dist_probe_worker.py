"""Run under torchrun: each rank probes a shard (gloo); rank 0 saves the all-reduced counts."""

import sys

import torch
import torch.distributed as dist

from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import load_parallel_questions
from plast_plugin.pipeline import probe_questions

if __name__ == "__main__":
    model_dir, data, out = sys.argv[1:4]
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # see conftest: transformers 4.37 float64 masks
    dist.init_process_group("gloo")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa").double()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    questions = load_parallel_questions(data, None, "en")
    result = probe_questions(model, tokenizer, questions, SelectionOptions(batch_size=2), progress=False)
    if dist.get_rank() == 0:
        torch.save({"counts": result.counts.counts, "tokens": result.counts.tokens}, out)
    dist.destroy_process_group()
