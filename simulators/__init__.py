"""Environments and simulated users: the tool world model, executable sandboxes, the user simulator."""
