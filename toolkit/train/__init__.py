"""Training: the loop, optimiser and EMA, data loaders, DDP (imports torch)."""
