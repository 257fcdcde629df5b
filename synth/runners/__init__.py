"""Runners map the stages over items and hand what comes out to the store."""
