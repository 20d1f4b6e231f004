"""Learning where to spend a sparsity budget: environments, agents, the search."""
