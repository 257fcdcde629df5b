"""The model layer: one chat client over the official `openai` SDK, presets, the offline model."""
