"""The building blocks every family is made of: attention, MLP, norms, positions, masks, cache, layer, stack."""
