"""Who hears about an alert, and when: alert lifecycle and dispatch queue (issue 3)."""
