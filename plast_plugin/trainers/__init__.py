"""Trainers other than LLaVA's script: the Hugging Face ``Trainer`` (``hf``; its data: ``hf_data``)
and the settings that make LLaMA-Factory, ms-swift, axolotl and lmms-engine train a selection
(``configs``; the tool names: ``tools``)."""
