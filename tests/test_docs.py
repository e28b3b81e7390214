"""The documentation says what the code does: README.md and docs/*.md, checked against the code.

Two things are checked:
- every relative link (and image) resolves to a file of the repository, and a `#anchor` to a
  heading of the page it names (GitHub's heading ids);
- every console sample prints what the current code prints. The convention (also for pages other
  engineers write): in a fenced ```console block, a line starting with `$ svt ` is a command, run as
  `python -m benchmark ...` from the repository root; the lines after it, up to the next line
  starting with `$`, are its output (stdout, then stderr). Output and sample are compared after
  masking numbers (any number matches any number) and collapsing runs of spaces; a sample line
  holding only `...` stands for any number of output lines; the home folder prints as `~`. A block
  directly preceded by a line `<!-- sample not run: REASON -->` is not run (commands that take
  more than ~30 s: full runs, bench, study); paste those from real output.

A failure names the file and line of the command, and the first line where the output differs,
expected vs got.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"^<!-- sample not run: .+ -->$")
FENCE = re.compile(r"^(```|~~~)")
# A number: optional sign (not after a letter, digit or dot, so `784-256` is two numbers), digits with
# thousands commas, a fraction, an exponent. Masked on both sides, so 98.30% matches 97.1%.
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
TIMEOUT_SECONDS = 600  # a hang guard; on a busy shared machine a 2 s command can take minutes


@dataclass
class Sample:
    """One `$ svt ...` command of a console block and the output printed under it."""

    page: Path
    line: int  # 1-based line of the command in its page
    command: str
    output: list[str]
    run: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(lines: list[str]):
    """(info string, first line index, body lines, index of the line before the fence) per fenced block."""
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        fence, info, start = match.group(1), lines[index][3:].strip(), index
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(fence)), len(lines))
        before = next((i for i in range(start - 1, -1, -1) if lines[i].strip()), None)
        yield info, start + 1, lines[start + 1:end], before
        index = end + 1


def samples_of(page: Path) -> list[Sample]:
    """Every `$ svt` command of the page's console blocks, with its sample output."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    for info, first, body, before in fenced_blocks(lines):
        if info != "console":
            continue
        run = before is None or not NOT_RUN.match(lines[before].strip())
        current = None
        for offset, text in enumerate(body):
            if text.startswith("$"):
                current = None
                if text.startswith("$ svt "):
                    current = Sample(page, first + offset + 1, text[2:].strip(), [], run)
                    found.append(current)
            elif current is not None:
                current.output.append(text)
    return found


def normalized(line: str) -> str:
    """A line with every number masked as `N` and runs of spaces collapsed to one."""
    return " ".join(NUMBER.sub("N", line).split())


def first_difference(expected: list[str], got: list[str]) -> str | None:
    """None if `got` matches the sample `expected` (numbers masked, spaces collapsed, `...` for any
    number of lines); else a message with the first sample line that could not be matched."""
    want = [normalized(line) for line in expected]
    have = [normalized(line) for line in got]
    while want and not want[-1]:
        want.pop()
    while have and not have[-1]:
        have.pop()
    best = [-1, 0]  # the furthest sample line that failed to match, and the first output line it met

    def match(i: int, j: int, memo: dict) -> bool:
        if (i, j) in memo:
            return memo[(i, j)]
        failed = i < len(want) and want[i] != "..." and (j == len(have) or want[i] != have[j])
        if failed and (i, -j) > (best[0], -best[1]):
            best[:] = [i, j]
        if i == len(want):
            result = j == len(have)
        elif want[i] == "...":
            result = any(match(i + 1, k, memo) for k in range(j, len(have) + 1))
        else:
            result = j < len(have) and want[i] == have[j] and match(i + 1, j + 1, memo)
        memo[(i, j)] = result
        return result

    if match(0, 0, {}):
        return None
    i, j = best if best[0] >= 0 else (len(want), len(want))
    expected_line = expected_lines_without_trailing_blanks(expected)[i] if i < len(want) else "(end of sample)"
    got_line = got[j] if j < len(have) else "(end of output)"
    return (f"sample line {i + 1} differs (numbers masked, spaces collapsed)\n"
            f"  expected: {expected_line}\n  got:      {got_line}")


def expected_lines_without_trailing_blanks(lines: list[str]) -> list[str]:
    lines = list(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def run_command(command: str) -> list[str]:
    """`svt ARGS` run as `python -m benchmark ARGS` from the repository root, 100 columns wide."""
    words = shlex.split(command)
    environment = {**os.environ, "COLUMNS": "100", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "benchmark", *words[1:]], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    output = (result.stdout + result.stderr).replace(str(Path.home()), "~")
    return output.splitlines()


ALL_SAMPLES = [sample for page in PAGES for sample in samples_of(page)]


@pytest.mark.parametrize("sample", [s for s in ALL_SAMPLES if s.run], ids=lambda sample: sample.where)
def test_a_console_sample_is_what_the_command_prints(sample):
    difference = first_difference(sample.output, run_command(sample.command))
    assert difference is None, f"{sample.where}: `{sample.command}`: {difference}"


def test_every_page_has_samples_and_the_slow_ones_say_why_they_are_not_run():
    assert any(sample.page.name == "README.md" and sample.run for sample in ALL_SAMPLES)
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, text in enumerate(lines, 1):
            if text.startswith("<!-- sample not run"):
                assert NOT_RUN.match(text.strip()), f"{page.name}:{number}: give a reason: {text}"
                following = next((line for line in lines[number:] if line.strip()), "")
                assert following.startswith("```console"), f"{page.name}:{number}: the marker precedes no console block"


# ---------------------------------------------------------------------------------------------
# Links

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img [^>]*src=\"([^\"]+)\"")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose_of(page: Path) -> list[tuple[int, str]]:
    """(line number, text) of the page outside fenced blocks, inline code removed."""
    return [(number, INLINE_CODE.sub("", text)) for number, text in prose_of_with_code(page)]


def heading_ids(page: Path) -> set[str]:
    """GitHub's ids of the page's headings: lower case, punctuation dropped, spaces to hyphens,
    `-1`, `-2` for repeats; plus explicit `<a id="...">` / `<a name="...">`."""
    ids, seen = set(), {}
    for _, text in prose_of_with_code(page):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", text)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).replace("`", "").lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            ids.add(slug if count == 0 else f"{slug}-{count}")
        ids.update(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", text))
    return ids


def prose_of_with_code(page: Path) -> list[tuple[int, str]]:
    """Like prose_of, but keeping inline code (a heading's id includes its code words)."""
    lines, inside, prose = page.read_text(encoding="utf-8").splitlines(), None, []
    for number, text in enumerate(lines, 1):
        match = FENCE.match(text)
        if match and inside is None:
            inside = match.group(1)
        elif match and text.startswith(inside):
            inside = None
        elif inside is None:
            prose.append((number, text))
    return prose


def links_of(page: Path) -> list[tuple[int, str]]:
    return [(number, next(group for group in match.groups() if group))
            for number, text in prose_of(page) for match in LINK.finditer(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = broken_links(page, ROOT)
    assert not broken, "broken links:\n" + "\n".join(broken)


def broken_links(page: Path, root: Path) -> list[str]:
    """`page:line: target (why)` for each relative link or image of `page` that does not resolve."""
    broken = []
    for number, target in links_of(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... are not ours to check
            continue
        path_part, _, anchor = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        if not file.exists():
            broken.append(f"{page.name}:{number}: {target} (no such file: {file.relative_to(root)})"
                          if file.is_relative_to(root) else f"{page.name}:{number}: {target} (outside the repository)")
        elif anchor and file.suffix == ".md" and anchor not in heading_ids(file):
            broken.append(f"{page.name}:{number}: {target} (no heading #{anchor} in {file.name})")
    return broken


# ---------------------------------------------------------------------------------------------
# The checker itself, on small made-up samples (it must be able to fail)


def test_the_comparison_masks_numbers_and_spaces_and_lets_dots_stand_for_lines():
    sample = ["accuracy 98.30%   (60 images)", "...", "verdict: PASS"]
    assert first_difference(sample, ["accuracy 97.1% (1,024 images)", "a", "b", "verdict: PASS", ""]) is None
    assert first_difference(sample, ["accuracy 97.1% (4 images)", "verdict: PASS"]) is None
    message = first_difference(sample, ["accuracy 97.1% (4 images)", "verdict: FAIL"])
    assert "expected: verdict: PASS" in message and "got:      verdict: FAIL" in message
    assert first_difference(["784-256-10 relu"], ["784-256-10 tanh"]) is not None
    assert first_difference(["one", "two"], ["one"]) is not None


def test_a_broken_link_or_anchor_is_named_and_code_is_not_read_as_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## The two sides (`benchmark/sides/`)\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text("[ok](other.md#the-two-sides-benchmarksides) [gone](missing.md) ![img](img/x.png)\n"
                    "[bad anchor](other.md#nowhere) [web](https://example.org/x) `[code](nothing.md)`\n"
                    "```\n[in a block](nothing.md)\n```\n[self](#other)\n")
    assert broken_links(page, tmp_path) == [
        "page.md:1: missing.md (no such file: docs/missing.md)", "page.md:1: img/x.png (no such file: docs/img/x.png)",
        "page.md:2: other.md#nowhere (no heading #nowhere in other.md)",
        "page.md:6: #other (no heading #other in page.md)"]


def test_samples_are_read_as_the_convention_says(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```console\n$ svt specs\nspec  layers\n...\n$ echo hi\nhi\n$ svt data\nMNIST in x\n```\n\n"
                    "<!-- sample not run: takes minutes -->\n```console\n$ svt run\nfinished\n```\n"
                    "```text\n$ svt bench\n```\n")
    found = [(sample.line, sample.command, sample.output, sample.run) for sample in samples_of(page)]
    assert found == [(4, "svt specs", ["spec  layers", "..."], True), (9, "svt data", ["MNIST in x"], True),
                     (15, "svt run", ["finished"], False)]
