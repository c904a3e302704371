"""The Pareto tool: read the ``results.json`` of one or more sweeps, average and mark fronts.

``python -m lightning_dnas.pareto <sweep dir> [...] [--cost params|macs|flash|peak_ram]
[--metric acc] [--split test|val] [--direction max|min] [--out DIR] [--wandb]``

Grouping follows the thesis protocol (SPEC section 6): runs of one ``(method, search_id)``
are fine-tune seeds of one searched architecture and are averaged (mean and sample std of
the metric) into a :class:`Group`. Searches that share the whole configuration but not the
full-pipeline ``seed`` are averaged again into a :class:`SeedGroup`, reported separately.

Parts, each importing only those before it: ``front`` (dominance), ``model`` (data
classes), ``analysis`` (loading, grouping), ``output`` (CSV, Markdown, PNG, W&B), ``cli``.
"""
