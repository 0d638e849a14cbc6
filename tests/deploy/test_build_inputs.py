"""What the image is built from: current lock files, a Dockerfile hadolint accepts, one wheel of the whole tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.deploy.podman import REPO
from tests.deploy.test_shipped import top_level_packages
from tools.lock import LOCKS, TARGETS, stale_locks


def test_given_pyproject_when_the_locks_are_compiled_again_then_nothing_changes():
    stale = stale_locks()
    assert not stale, "stale lock files (python -m tools.lock rewrites them):\n" + "\n".join(stale.values())


def test_every_lock_file_pins_each_package_with_hashes():
    for name in TARGETS:
        text = (LOCKS / name).read_text()
        pins = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
        assert pins, name
        for pin in pins:
            assert "==" in pin and pin.endswith("\\"), f"{name}: {pin} is not pinned with hashes"


def test_the_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(REPO / "deploy" / "Dockerfile")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_given_the_tree_when_its_wheel_is_built_then_every_shipped_file_is_in_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("sfsync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", *top_level_packages()], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    # a package's README is for readers of the repository, not for the installed package
    shipped = {path for path in tracked if not path.endswith("README.md")}
    assert shipped, "no package found in the tree"
    assert sorted(shipped - names) == []
    assert {name.split("/")[0] for name in names if "/" in name and ".dist-info" not in name} \
        == set(top_level_packages())
