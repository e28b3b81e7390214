"""`svt check`: a learner's own NumPy network, in its own names and layouts, against its torch twin.

    from benchmark.check import check_model
    report = check_model(parameters=params_fn, loss_and_grads=loss_fn, twin="100:relu,10")
    print(report.table()); print(report.verdict()); report.ok

learner.py (their file in its own process, or their functions in memory), child.py (that process),
twin.py (TWIN/LOSS/REDUCTION/SCALE and the twin's pass), mapping.py (their names to the twin's),
engine.py (the check), diagnose.py (the findings in words), report.py, batch.py (many files), api.py.
"""
from benchmark.check.api import check_model  # noqa: E402

__all__ = ["check_model"]
