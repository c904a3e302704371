"""The application layer: run results (``results.json``) and the Pareto tool over sweeps."""
