"""synth: agentic tool-use training data, synthesised the way the Kimi K2 report describes it."""

__version__ = "0.1.0"
