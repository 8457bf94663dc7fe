"""``trilogy demo``: the three families trained side by side under one budget, and a report of what each learned,
what it cost and how it attends. ``run.py`` is the orchestration, read it first."""
