"""Trainers other than LLaVA's script: the Hugging Face ``Trainer`` (``hf``; its data: ``hf_data``)
and the settings that make LLaMA-Factory, ms-swift and axolotl train a selection (``configs``)."""
