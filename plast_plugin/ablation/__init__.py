"""`plast ablate`: does the PLAST selection beat other layer sets of the same trainable budget?

- ``stats``: means, 95% t-intervals over seeds, paired differences and verdicts (plain Python)
- ``plan``: which alternatives, layer draws and seeds; a deterministic plan recorded in the run folder
- ``runner``: one training subprocess per (alternative, seed), resumable
- ``lmms_scoring``: optionally, each run through the eval env's ``plast export --to-hf`` and ``plast eval``
- ``report``: the table, the plots and ablation.json
"""
