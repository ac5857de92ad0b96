"""Two processes (gloo), each probing a shard, give exactly the one-process counts."""

import subprocess
import sys
from pathlib import Path

import torch

from plast_plugin.core.options import SelectionOptions
from plast_plugin.data.parallel_data import load_parallel_questions
from plast_plugin.pipeline import probe_questions


def test_two_process_probe_equals_one_process(tiny_llama_dir, questions_jsonl, tmp_path):
    out = tmp_path / "counts.pt"
    worker = Path(__file__).with_name("dist_probe_worker.py")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(worker), str(tiny_llama_dir), str(questions_jsonl), str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    distributed = torch.load(out)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa").double()
        single = probe_questions(model, AutoTokenizer.from_pretrained(tiny_llama_dir),
                                 load_parallel_questions(questions_jsonl, None, "en"),
                                 SelectionOptions(batch_size=2), progress=False)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(distributed["tokens"], single.counts.tokens)
    assert torch.equal(distributed["counts"], single.counts.counts)
