"""The two sides, each written once: `ScratchSide` (scratch_nn) and `TorchSide` (its torch twin), with
forward / backward / update / step / evaluate / probe, used by the run, the parity engine, the bench and sanity."""
