"""The spec: what a network and its training are, read once from TOML or the command line.

    spec.py             load_spec, spec_from_dict, to_dict, with_overrides: reading and writing specs
    spec_classes.py     the frozen dataclasses ModelSpec, TrainSpec, Spec and their validation
    spec_checks.py      SpecError and the checks every value goes through
    layer_spec_base.py  LayerSpec, the base of every layer entry, and shape_text
    layer_specs.py      one dataclass per vector layer and activation, the registry LAYER_SPECS
    image_specs.py      the image layers of a CNN (conv2d, pooling, batch_norm2d, dropout2d)
    notation.py         the compact `--layers` form (`256:relu,10`)

`from scratch_nn.spec import ...` gives what `scratch_nn.spec` gave when it was one module.
"""
# Everything spec.py exports (its __all__), so that a name added there is importable from here too.
from scratch_nn.spec.spec import *  # noqa: F403
from scratch_nn.spec.spec import __all__  # noqa: F401
