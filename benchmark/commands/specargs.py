"""The model options every subcommand shares: `--spec NAME|FILE` or `--layers ...`, plus overrides.

    svt describe --spec deep-sigmoid
    svt run --layers 256:relu,128:tanh,10 --optimizer adam --lr 1e-3 --epochs 3

`--spec` and `--layers` can be combined: the spec gives everything, `--layers` replaces its
layers. Without either, the default spec (`mnist-mlp`) is used.
"""
from __future__ import annotations

import argparse

from scratch_nn.spec import ACTIVATIONS, DEFAULT_SPEC, DTYPES, INITS, OPTIMIZERS, Spec, load_spec, with_overrides

# The grammar of scratch_nn.spec.notation, which is also what `svt specs`, `describe`, `sanity` and the report print.
LAYERS_HELP = (
    "the hidden layers, then the output size (optionally with an output activation, 10:sigmoid, for "
    "squared error or binary cross-entropy on probabilities): ITEM,...,ITEM,10 with "
    "ITEM = [COUNTx]UNITS[:ACTIVATION][+bn][+dropoutP],"
    " e.g. 256:relu,128:tanh,10 or 8x128:sigmoid+bn,10 or 512:leaky_relu0.2+dropout0.5,10. "
    f"COUNTx repeats the layer; ACTIVATION is one of {', '.join(ACTIVATIONS)} (default relu), leaky_relu "
    "optionally with its negative slope glued on (default 0.01); +bn adds BatchNorm1d after the Linear, "
    "+dropoutP Dropout(p=P) after the activation. `svt specs`, `describe`, `sanity` and the report print "
    "layers in this form. Replaces the spec's layers")


def add_model_arguments(parser: argparse.ArgumentParser, training: bool = True) -> None:
    """Add the shared model options; `training=False` leaves out the optimiser/schedule flags."""
    group = parser.add_argument_group("model")
    group.add_argument("--spec", metavar="NAME|FILE", default=None,
                       help=f"a built-in spec name (see `svt specs`) or a TOML file (default: {DEFAULT_SPEC})")
    group.add_argument("--layers", metavar="LIST", default=None, help=LAYERS_HELP)
    group.add_argument("--dtype", choices=DTYPES, default=None, help="float32 or float64 (default: the spec's)")
    group.add_argument("--init", metavar="NAME", default=None,
                       help=f"weight initialiser, one of: {', '.join(INITS)}")
    if not training:
        return
    group = parser.add_argument_group("training")
    group.add_argument("--optimizer", metavar="NAME", default=None,
                       help=f"one of: {', '.join(OPTIMIZERS)}")
    group.add_argument("--lr", type=float, default=None, help="learning rate")
    group.add_argument("--batch-size", type=int, default=None, help="mini-batch size")
    group.add_argument("--epochs", type=int, default=None, help="number of epochs")
    group.add_argument("--seed", type=int, default=None, help="seed of the one generator behind init, "
                                                              "shuffling and dropout")


def batch_size_flag(args: argparse.Namespace) -> str:
    """How to name the batch size in a message: the flag if it was given, else the spec's key."""
    return "--batch-size" if getattr(args, "batch_size", None) is not None else "the spec's batch_size"


def spec_from_args(args: argparse.Namespace) -> Spec:
    """Resolve `--spec`/`--layers` and the override flags into one validated Spec."""
    spec = load_spec(args.spec or DEFAULT_SPEC)
    model = {"dtype": args.dtype, "init": args.init}
    train = {key: getattr(args, key, None) for key in ("optimizer", "lr", "batch_size", "epochs", "seed")}
    return with_overrides(spec, layers=args.layers, model=model, train=train)


def add_slice_arguments(group, quiet_help: str) -> None:
    """The options `svt run` and `svt study` share: how often to look inside, how much of MNIST, bars."""
    group.add_argument("--check-every", type=int, default=50, metavar="K",
                       help="look inside every K steps (of each seed, in a study): gradient parity, drift, "
                            "gradient norms (default: 50)")
    group.add_argument("--train-limit", type=int, default=None, metavar="N",
                       help="train on the first N training images only (a quick look; default: all 60,000)")
    group.add_argument("--test-limit", type=int, default=None, metavar="N",
                       help="evaluate on the first N test images only (default: all 10,000)")
    group.add_argument("--quiet", action="store_true", help=quiet_help)
