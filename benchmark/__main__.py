"""`python -m benchmark ...` is the same CLI as the `svt` console script."""
import sys

from benchmark.commands.cli import main

sys.exit(main())
