"""Every bad command-line input is one line, ``adcompiler: error: ...``, exit status 2,
never a traceback (issue 16)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adcompiler.cli import main as cli_main
from adcompiler.train.cli import main as train_main

ROOT = Path(__file__).resolve().parent.parent
MODELS = str(ROOT / "tests" / "corpus_models.py")

TINY_SAMPLE = """
import numpy as np
from adcompiler.train.losses import mean_squared_error

defaults = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "optimizer": "sgd"}

def loss(w, x, y):
    return mean_squared_error(x @ w, y)

def init_params(seed):
    return {"w": np.zeros(2)}

def load_data():
    x = np.random.default_rng(0).normal(size=(40, 2))
    return {"train": (x, x @ np.array([1.0, -1.0]))}
"""


def one_line_error(capsys, code, expected_status=2, prefix="adcompiler: error: "):
    err = capsys.readouterr().err
    assert code == expected_status, err
    assert err.startswith(prefix), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_version(capsys):
    import adcompiler

    with pytest.raises(SystemExit) as exit_:
        cli_main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"adcompiler {adcompiler.__version__}"


def test_model_file_with_a_syntax_error(tmp_path, capsys):
    model = tmp_path / "broken_syntax.py"
    model.write_text("import numpy as np\n\ndef f(x:\n    return x\n")
    err = one_line_error(capsys, cli_main(["grad", f"{model}:f"]))
    assert f"{model}:3:" in err and "syntax error" in err


def test_model_file_that_raises_at_import(tmp_path, capsys):
    model = tmp_path / "raises_at_import.py"
    model.write_text("import numpy as np\n\nCONFIG = {}\nSIZE = CONFIG['size']\n")
    err = one_line_error(capsys, cli_main(["grad", f"{model}:f"]))
    assert f"{model}:4:" in err and "KeyError" in err and "'size'" in err


def test_spec_that_is_not_a_python_file(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not python\n")
    err = one_line_error(capsys, cli_main(["grad", f"{notes}:f"]))
    assert "expected a Python file" in err
    one_line_error(capsys, cli_main(["grad", "no_colon_here.py"]))
    one_line_error(capsys, cli_main(["ir", str(tmp_path / "missing.py") + ":f"]))


def test_output_to_a_folder_or_a_missing_folder(tmp_path, capsys):
    err = one_line_error(capsys, cli_main(["grad", f"{MODELS}:mlp", "-o", str(tmp_path)]))
    assert "is a folder" in err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "grad.py"
    err = one_line_error(capsys, cli_main(["grad", f"{MODELS}:mlp", "-o", str(out)]))
    assert "does not exist" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_to_a_read_only_folder(tmp_path, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        err = one_line_error(
            capsys, cli_main(["grad", f"{MODELS}:mlp", "-o", str(folder / "g.py")])
        )
        assert "permission denied" in err
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("wrt", ["W1,,b1", ",", "W1,", "W1 b1", "W9"])
def test_bad_wrt(capsys, wrt):
    err = one_line_error(capsys, cli_main(["grad", f"{MODELS}:mlp", "--wrt", wrt]))
    assert "wrt" in err


def test_wrt_a_dict_of_parameters(tmp_path, capsys):
    """A parameter used as a dict has keys known only at a call: without --keys the CLI
    says so (and how to give them) instead of crashing (ir likewise)."""
    model = tmp_path / "dict_params.py"
    model.write_text(
        "import numpy as np\n\n"
        "def loss(params, x):\n"
        "    return np.sum(params['w'] * x) + params['b']\n"
    )
    for command in ("grad", "ir"):
        err = one_line_error(capsys, cli_main([command, f"{model}:loss", "--wrt", "params"]))
        assert "uses params as a dict, list or tuple" in err and "--keys params=" in err
    err = one_line_error(capsys, cli_main(["grad", f"{model}:loss", "--wrt", "x",
                                           "--keys", "params=w,b"]))  # fmt: skip
    assert "does not use 'params' as a dict" in err
    err = one_line_error(capsys, cli_main(["ir", f"{model}:loss", "--keys", "params=w,b"]))
    assert "--keys needs --wrt" in err


def test_unknown_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["grad", f"{MODELS}:mlp", "--bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("adcompiler: error: unrecognized arguments: --bogus")
    assert err.count("\n") == 1


# ------------------------------------------------------------------ adcompiler train


@pytest.mark.parametrize(
    "option, value",
    [("--batch-size", "0"), ("--workers", "0"), ("--epochs", "-1"), ("--lr", "0"),
     ("--checkpoint-every", "0"), ("--batch-size", "eight"), ("--lr", "nan")],
)  # fmt: skip
def test_train_rejects_bad_numbers(tmp_path, capsys, option, value):
    sample = tmp_path / "tiny.py"
    sample.write_text(TINY_SAMPLE)
    with pytest.raises(SystemExit) as exit_:
        train_main([str(sample), option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"adcompiler train: error: argument {option}:"), err
    assert err.count("\n") == 1


@pytest.mark.parametrize("option", ["--checkpoint", "--emit", "--save", "--plot"])
def test_train_checks_output_paths_before_training(tmp_path, capsys, option):
    sample = tmp_path / "tiny.py"
    sample.write_text(TINY_SAMPLE + "\nprint('sample imported')\n")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = train_main([str(sample), option, str(blocker / "out")])
    err = one_line_error(capsys, code, prefix="adcompiler train: error: ")
    assert option in err and "does not exist" in err
    code = train_main([str(sample), option, str(tmp_path)])
    err = one_line_error(capsys, code, prefix="adcompiler train: error: ")
    assert "is a folder" in err


def test_train_sample_with_a_syntax_error_or_raising(tmp_path, capsys):
    sample = tmp_path / "broken.py"
    sample.write_text("def loss(w, x:\n")
    err = one_line_error(capsys, train_main([str(sample)]), prefix="adcompiler train: error: ")
    assert f"{sample}:1:" in err
    sample.write_text("import numpy as np\nnp.load('no_such_data.npz')\n")
    err = one_line_error(capsys, train_main([str(sample)]), prefix="adcompiler train: error: ")
    assert f"{sample}:2:" in err and "FileNotFoundError" in err
    notes = tmp_path / "sample.txt"
    notes.write_text("")
    one_line_error(capsys, train_main([str(notes)]), prefix="adcompiler train: error: ")


def test_no_traceback_through_the_real_entry_point(tmp_path):
    """The same, through ``python -m adcompiler`` (what the console script runs)."""
    completed = subprocess.run(
        [sys.executable, "-m", "adcompiler", "train", str(tmp_path / "x.py"), "--workers", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.startswith("adcompiler train: error: argument --workers")
    assert "Traceback" not in completed.stderr


def test_train_heartbeat_timeout_needs_local_workers(tmp_path, capsys):
    sample = tmp_path / "tiny.py"
    sample.write_text(TINY_SAMPLE)
    code = train_main([str(sample), "--heartbeat-timeout", "5"])
    err = one_line_error(capsys, code, prefix="adcompiler train: error: ")
    assert "--workers 2 or more" in err
    assert train_main([str(sample), "--workers", "2", "--heartbeat-timeout", "20", "--quiet"]) == 0


def test_train_sample_whose_loss_the_compiler_refuses(tmp_path, capsys):
    sample = tmp_path / "refused.py"
    sample.write_text(TINY_SAMPLE.replace(
        "    return mean_squared_error(x @ w, y)",
        "    try:\n        r = x @ w\n    except ValueError:\n        r = y\n"
        "    return mean_squared_error(r, y)",
    ))  # fmt: skip
    for extra in ([], ["--emit", str(tmp_path / "grad.py")]):
        assert train_main([str(sample), "--quiet", *extra]) == 1
        err = capsys.readouterr().err
        assert "`try` is not supported" in err and "Traceback" not in err


def test_train_sample_with_a_metric_on_predictions(tmp_path, capsys):
    sample = tmp_path / "metric.py"
    sample.write_text(
        TINY_SAMPLE.replace('"train": (x', '"validation": (x, x[:, 0]), "train": (x')
        + "\nfrom adcompiler.train.metrics import r2_score as metric\n"
    )
    err = one_line_error(capsys, train_main([str(sample), "--quiet"]),
                         prefix="adcompiler train: error: ")  # fmt: skip
    assert "the metric r2_score(prediction, target) is called like the loss" in err
