"""Pure-PyTorch search engine (no Lightning import): graph analysis, masks, costs, export."""
