"""Seed taxonomy and tool spec sets, as data, loaded by `synth.catalog`."""
