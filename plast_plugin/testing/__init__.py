"""Public helpers for testing PLAST integrations offline (docs/dev/testing_api.md): tiny local
models built from a seed, an offline Hugging Face cache, and a wheel installed into a fresh venv.
The project's own tests and demo use them; nothing else in the package imports them."""
