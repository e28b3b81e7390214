"""The finished seeds of a study on disk: saved one by one, found again by `--resume`.

    <out>/.partial-<name>/seeds/seed-<k>/    a seed as it finishes (atomically): seed.json, summary.json, CSVs
    <out>/.partial-<name>/workers/           the local backend's job, outcome and log files
    <out>/<name>/seeds/seed-<k>/             the same folders, in the complete study

`seed.json` is what the study reads (the seed's result: accuracies, losses, parity, the job that
made it); `summary.json` and the CSVs are those of `svt run`'s report for that seed. A seed is
reused only if its job equals the one asked for now (spec, data slice, threads, checks), so a
resumed study never mixes seeds made differently.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from benchmark.core.errors import UserError
from benchmark.core.files import folder_written_atomically

RESULT_FILE = "seed.json"
SAME_ANYWHERE = ("data_dir",)  # the same MNIST may sit elsewhere on another node or day


def seed_folder(root: Path, seed: int) -> Path:
    return root / "seeds" / f"seed-{seed}"


def save_seed(work: Path, outcome: dict) -> dict:
    """Write a finished seed's files and result into `work/seeds/seed-<k>/` atomically; its result."""
    result = outcome["result"]
    with folder_written_atomically(seed_folder(work, result["seed"])) as folder:
        for file_name, text in outcome["files"].items():
            (folder / file_name).write_text(text, encoding="utf-8")
        (folder / RESULT_FILE).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return result


def read_result(folder: Path) -> dict:
    path = folder / RESULT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"--resume: {path} cannot be read ({error}); remove {folder} to run that seed again") from None


def first_difference(old, new, where: str = "") -> str | None:
    """The first key path at which two plain-data values differ ('spec.train.epochs: 1, now 2'), or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [key for key in new if key not in old]:
            found = first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return next(filter(None, (first_difference(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(old, new)))),
                    None)
    return None if old == new else f"{where}: {old!r}, now {new!r}"


def check_same_job(old: dict, new: dict, folder: Path) -> None:
    """Refuse to reuse a seed that was made by a different job."""
    keep = {key: value for key, value in old.items() if key not in SAME_ANYWHERE}
    difference = first_difference(keep, {key: value for key, value in new.items() if key not in SAME_ANYWHERE})
    if difference:
        raise UserError(f"--resume: {folder} was made differently ({difference}); run without --resume to "
                        "start afresh, or give another --name")


def prepare(work: Path, final: Path, jobs: list[dict], resume: bool) -> dict[int, dict]:
    """Set up the partial folder; with `resume`, the results of the asked-for seeds already
    finished (in `work`, or in the complete study `final`, copied into `work`), by seed."""
    if not resume:
        if (work / "seeds").is_dir() and any((work / "seeds").iterdir()):
            print(f"svt study: starting afresh; the unfinished study in {work} is discarded "
                  "(--resume would have reused its seeds)", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return {}
    if not work.is_dir() and not final.is_dir():
        raise UserError(f"--resume: there is no study {final.name!r} in {final.parent} (neither finished nor "
                        "interrupted); check --name and --out, or run without --resume")
    wanted, results = {job["seed"]: job for job in jobs}, {}
    for root in (work, final):
        for folder in sorted((root / "seeds").glob("seed-*")):
            result = read_result(folder)
            if result["seed"] not in wanted or result["seed"] in results:
                continue
            check_same_job(result["job"], wanted[result["seed"]], folder)
            if root is final:
                shutil.copytree(folder, seed_folder(work, result["seed"]))
            results[result["seed"]] = result
    return results


def copy_seeds(work: Path, folder: Path, seeds) -> None:
    """Copy the finished seeds' folders into the study folder being built."""
    for seed in seeds:
        shutil.copytree(seed_folder(work, seed), seed_folder(folder, seed))


def seed_line(result: dict) -> str:
    """'seed 3: scratch 98.41%, torch 98.44% (-0.03 pp), parity ok, 35.1 s on host (pid 123)'."""
    if result["stopped"]:
        return f"seed {result['seed']}: stopped: {result['stopped']}"
    accuracy = {side: 100 * values["test_accuracy"] for side, values in result["sides"].items()}
    parity = "ok" if result["parity_broken"] == 0 else f"{result['parity_broken']} tensors out of tolerance"
    worker = result["worker"]
    return (f"seed {result['seed']}: scratch {accuracy['scratch']:.2f}%, torch {accuracy['torch']:.2f}% "
            f"({accuracy['scratch'] - accuracy['torch']:+.2f} pp), parity {parity}, {result['seconds']:.1f} s "
            f"on {worker['host']} (pid {worker['pid']})")
