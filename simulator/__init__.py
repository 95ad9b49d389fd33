"""A fleet of simulated devices: just another client of the broker (issue 5)."""
