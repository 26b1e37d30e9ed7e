"""A class release is written as ordinary files, which the class's repository and its readers can read:
0644 files and 0755 folders under the usual umask (the umask is respected), never mkstemp's 0600. And the
README tells an instructor where a release goes and how to publish it."""

import os
import stat

import pytest

from utils import course
from utils.instructor import build


@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_a_release_is_written_with_ordinary_permissions(tmp_path, umask, file_mode, folder_mode):
    before = os.umask(umask)
    try:
        folder = tmp_path / "attention-class"
        build.write_release(folder, "someone/attention-class", upto=2)
        build.write_release(folder, "someone/attention-class", upto=2)  # rewritten: the same modes
    finally:
        os.umask(before)
    paths = [folder, *folder.rglob("*")]
    modes = {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in paths}
    files = {name: mode for name, mode in modes.items() if (folder / name).is_file()}
    folders = {name: mode for name, mode in modes.items() if (folder / name).is_dir()}
    assert "notebooks/01_averaging.ipynb" in files and "utils/checks" in folders
    assert {mode for mode in files.values()} == {file_mode}, files
    assert {mode for mode in folders.values()} == {folder_mode}, folders


def test_the_readme_says_where_a_release_goes_and_how_to_publish_it():
    readme = (course.ROOT / "README.md").read_text()
    instructors = readme[readme.index("## For instructors") :]
    assert "outside" in instructors and "refuses a folder inside" in instructors
    for step in ("git init", "git add -A", "git commit", "git remote add origin", "git push"):
        assert step in instructors, step
