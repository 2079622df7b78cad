"""Training SiamMask models: datasets, pair sampling, targets, losses and the loop."""
