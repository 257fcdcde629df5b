"""The stages: plain async functions over records, with an explicit context. No Ray, files or CLI."""
