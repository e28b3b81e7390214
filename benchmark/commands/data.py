"""`svt data`: fetch if needed, verify and locate the MNIST files; `--data-dir`, shared by every command
that reads MNIST."""
from __future__ import annotations

import argparse

from benchmark.data.mnist import FILES, file_md5, load_mnist


def add_data_dir_argument(parser) -> None:
    """--data-dir, the same on every command that reads MNIST (`parser` may be an argument group)."""
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="folder holding MNIST/raw (default: $SVT_DATA_DIR, else ~/.cache/scratch-vs-torch)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `svt data`."""
    add_data_dir_argument(parser)
    parser.add_argument("--refresh", action="store_true", help="fetch the four files again, replacing them")


def run(args: argparse.Namespace) -> int:
    """Fetch if needed, verify and parse MNIST, then say where it is and what each file is."""
    mnist = load_mnist(args.data_dir, refresh=args.refresh)
    raw_dir = mnist.root / "MNIST" / "raw"
    print(f"MNIST in {raw_dir}")
    print(f"source: {mnist.source}")
    for name in FILES:
        path = raw_dir / name
        print(f"  {name:<24} {path.stat().st_size:>9} bytes  md5 {file_md5(path)}  ok")
    print(f"train {mnist.train_images.shape}, test {mnist.test_images.shape}, labels 0-9, uint8")
    return 0
