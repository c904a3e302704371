"""Small datasets generated locally (no downloads) for examples and tests."""
