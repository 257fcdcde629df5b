"""Rubric templates, as data: one JSON file per rubric kind, loaded by `synth.catalog`."""
