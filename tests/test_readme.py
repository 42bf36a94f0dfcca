"""The README can never lie: its Python blocks run, and CI runs its test command verbatim."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_readme_python_block_runs(index, tmp_path):
    block = code_blocks("python")[index]
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"README python block {index} failed:\n{result.stderr}"


def test_ci_runs_the_readme_test_command():
    bash_blocks = [b.strip() for b in code_blocks("bash")]
    test_commands = [b for b in bash_blocks if "pytest" in b]
    assert len(test_commands) == 1, "README must show exactly one test command"
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert test_commands[0] in ci_script.splitlines()


def test_version_is_exposed():
    import metric_runner

    assert re.fullmatch(r"\d+\.\d+\.\d+", metric_runner.__version__)
