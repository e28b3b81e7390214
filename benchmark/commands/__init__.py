"""The command line: argparse and printing; each subcommand its own module (`add_arguments`, `run`)."""
