"""The run: both sides trained side by side on the same batches, measured as they go."""
