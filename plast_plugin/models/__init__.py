"""Model families: resolving a name (folder or hub id), loading official LLaVA, llava-hf, LLaVA-NeXT
and causal LMs, turning parallel questions into each family's probe inputs, and the held-out
translation loss."""
