"""Training: one loop for the three families (``loop.py``), AdamW and its schedule (``optim.py``), resumable
checkpoints (``state.py``), DDP (``distributed.py``), metrics (``metrics.py``); ``session.py`` builds a run from
the options of ``trilogy train``."""
