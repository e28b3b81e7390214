"""Fixtures shared by the test modules."""
import pytest


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, verified (benchmark.data.mnist.load_mnist), loaded once per test session.

    Fetched into the user cache (or $SVT_DATA_DIR) on first use; later sessions read it from there.
    """
    from benchmark.data.mnist import load_mnist

    return load_mnist()


@pytest.fixture(scope="module")
def worst_gradient_error(request):
    """Collects the largest gradient-check relative error of a test module and prints it at the
    end of the module (`pytest -rP` or `-s` shows it); each check asserts its own tolerance."""
    worst = {"error": 0.0, "where": "none"}
    yield worst
    print(f"\n[{request.module.__name__}] largest gradient-check relative error: "
          f"{worst['error']:.3e} ({worst['where']})")
