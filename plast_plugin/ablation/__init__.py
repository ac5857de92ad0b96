"""`plast ablate` (commands/ablate.py): its plan, resumable runs, optional lmms-eval scoring, statistics and report."""
