"""Fixtures shared by the test modules."""
import pytest


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, verified (benchmark.data.load_mnist), loaded once per test session.

    Fetched into the user cache (or $SVT_DATA_DIR) on first use; later sessions read it from there.
    """
    from benchmark.data import load_mnist

    return load_mnist()
