"""Packaging (issue 16): license metadata, py.typed, and a wheel that trains the shipped
samples by name outside a checkout."""

import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import adcompiler

ROOT = Path(__file__).resolve().parent.parent


def test_license_file_and_metadata_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # an SPDX expression (PEP 639), not a table
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "version" in project["dynamic"]  # from adcompiler.__version__, one place


def test_package_is_typed_and_ships_its_samples():
    package = Path(adcompiler.__file__).parent
    assert (package / "py.typed").is_file()
    from adcompiler import samples

    for name in samples.NAMES:
        assert Path(samples.path(name)).is_file()
    assert {p.name for p in (package / "samples" / "data").glob("*.npz")} >= {
        "digits.npz",
        "diabetes.npz",
    }


@pytest.mark.slow
def test_wheel_installs_and_trains_a_sample_by_name(tmp_path):
    """Build a wheel from a copy of the source, install it into a fresh virtual environment
    (NumPy and the other dependencies from the system's site-packages), and train
    ``mlp_digits`` by name from a folder that holds no checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "adcompiler", source / "adcompiler", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "-w", str(wheels), "--no-deps",
         "-q", "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if built.returncode != 0 and "No matching distribution found for setuptools" in built.stderr:
        pytest.skip("no package index to fetch setuptools>=77 for the isolated build")
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("adcompiler-*.whl")

    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no checkout in sight
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
        env=env, timeout=300,
    )  # fmt: skip
    python = venv / "bin" / "python"
    if sys.prefix != sys.base_prefix:  # run from a virtual environment (.ci/run's for 3.12+):
        # the new one's "system" site-packages are the base Python's, not this one's
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, env=env, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        Path(purelib, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q",
         "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = subprocess.run(
        [str(python), "-c", "import adcompiler; print(adcompiler.__file__)"],
        capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    script = venv / "bin" / "adcompiler"
    version = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert version.stdout.strip() == f"adcompiler {adcompiler.__version__}"
    trained = subprocess.run(
        [str(script), "train", "mlp_digits", "--epochs", "2", "--quiet",
         "--save", str(elsewhere / "params.npz")],
        capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "test accuracy:" in trained.stdout
    assert (elsewhere / "params.npz").is_file()


def test_deprecations_in_adcompilers_code_fail_the_suite():
    """pyproject.toml's filterwarnings: a DeprecationWarning raised from adcompiler's modules
    or from generated code (run in the namespace of module adcompiler.generated) is an error
    in the test suite, on every Python .ci/run runs."""
    import warnings

    for module in ("adcompiler.generated", "adcompiler.helpers", "adcompiler.api"):
        code = compile("warnings.warn('old', DeprecationWarning)", f"<{module}>", "exec")
        with pytest.raises(DeprecationWarning):
            exec(code, {"__name__": module, "warnings": warnings})  # noqa: S102
    code = compile("warnings.warn('old', DeprecationWarning)", "<numpy>", "exec")
    with warnings.catch_warnings(record=True) as seen:  # the suite's filters, recorded
        exec(code, {"__name__": "numpy.somewhere", "warnings": warnings})  # noqa: S102
    assert [w.category for w in seen] == [DeprecationWarning]  # a library's: a warning
