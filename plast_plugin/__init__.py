"""PLAST: Precise LAnguage-Specific layer Tuning for LLaVA-style models."""
__version__ = "0.2.0"
