"""The data PLAST reads and writes: the language table, parallel questions (JSONL or VLMEvalKit
TSVs) and the question -> English-translation training data in LLaVA's JSON format."""
