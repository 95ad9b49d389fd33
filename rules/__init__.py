"""Whether an event matters: the streaming rule engine (issue 3)."""
