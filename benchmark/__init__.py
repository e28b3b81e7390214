"""`svt`: the scratch side and the torch side trained, compared, timed and reported (see docs/architecture.md)."""
