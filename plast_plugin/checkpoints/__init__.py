"""LLaVA checkpoint tools: the delta of the trained layers, merging it into a base, and conversion
of an official LLaVA checkpoint to transformers' llava-hf format."""
