"""benchmark.core.files: a file or folder appears whole under its name, or the earlier one stays."""
import pytest

from benchmark.core.files import folder_written_atomically, write_atomically


def test_a_written_file_replaces_the_earlier_one_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    path.write_bytes(b"old")
    write_atomically(path, lambda file: file.write(b"new"))
    assert path.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [path]


def test_a_failing_check_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def refuse(temporary):
        assert temporary.read_bytes() == b"complete"  # the check sees the whole temporary file
        raise ValueError("wrong checksum")

    with pytest.raises(ValueError, match="wrong checksum"):
        write_atomically(path, lambda file: file.write(b"complete"), refuse)
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("earlier", ["none", "empty", "full"])
def test_a_folder_block_that_ends_replaces_the_earlier_folder(tmp_path, earlier):
    final = tmp_path / "reports" / "run"
    if earlier != "none":
        final.mkdir(parents=True)
    if earlier == "full":
        (final / "stale.txt").write_text("from the earlier run")
    with folder_written_atomically(final) as folder:
        assert folder != final and folder.parent == final.parent and not any(folder.iterdir())
        (folder / "report.md").write_text("new")
    assert sorted(path.name for path in final.iterdir()) == ["report.md"]
    assert [path.name for path in final.parent.iterdir()] == ["run"]  # no .tmp-*, no .old-*


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_a_folder_block_that_raises_keeps_the_earlier_folder(tmp_path, interruption):
    final = tmp_path / "run"
    final.mkdir()
    (final / "report.md").write_text("earlier")
    with pytest.raises(interruption):
        with folder_written_atomically(final) as folder:
            (folder / "report.md").write_text("half")
            raise interruption()
    assert (final / "report.md").read_text() == "earlier"
    assert [path.name for path in tmp_path.iterdir()] == ["run"]
