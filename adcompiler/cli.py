"""The command line: emit gradients, print IR, train samples.

adcompiler grad model.py:loss --wrt w,b [-o loss_grad.py] [--value]
adcompiler ir model.py:loss
adcompiler train samples/mlp_digits.py --epochs 10
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from pathlib import Path

from adcompiler.errors import UnsupportedSyntaxError


def load_target(spec: str):
    """Import ``path/to/file.py:function`` and return the function."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise SystemExit(f"error: expected FILE.py:FUNCTION, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"error: no such file: {path}")
    module_name = f"_adcompiler_target_{file.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(file.resolve().parent))
    module_spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if fn is None:
        raise SystemExit(f"error: {path} has no function {name!r}")
    return fn


def cmd_grad(args) -> int:
    from adcompiler import api
    from adcompiler.standalone import module_source

    fn = load_target(args.target)
    wrt = None
    if args.wrt:
        items = [w.strip() for w in args.wrt.split(",") if w.strip()]
        items = [int(w) if w.lstrip("-").isdigit() else w for w in items]
        wrt = items[0] if len(items) == 1 else tuple(items)
    kind = "value_and_grad" if args.value else "grad"
    g = api.compiled(fn, kind, wrt)
    command = "adcompiler " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = module_source(
        [g.__adcompiler_emitted__],
        doc=g.__doc__.splitlines()[0],
        origin=os.path.relpath(fn.__code__.co_filename),
        command=command,
    )
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: {g.__name__}{_signature(g)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _signature(g) -> str:
    import inspect

    return str(inspect.signature(g))


def cmd_ir(args) -> int:
    from adcompiler import api

    fn = load_target(args.target)
    if args.wrt:
        wrt = tuple(w.strip() for w in args.wrt.split(","))
        print(api.ir(api.compiled(fn, "grad", wrt if len(wrt) > 1 else wrt[0])), end="")
    else:
        print(api.ir(fn), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from adcompiler.train.cli import main as train_main

        return train_main(argv[1:])
    parser = argparse.ArgumentParser(prog="adcompiler", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("grad", help="write the gradient of FILE.py:FUNCTION as a NumPy-only module")
    p.add_argument("target", help="FILE.py:FUNCTION")
    p.add_argument("--wrt", help="comma-separated argument names or positions (default: first)")
    p.add_argument("-o", "--output", help="output file (default: standard output)")
    p.add_argument("--value", action="store_true", help="also return the function's value")
    p.set_defaults(run=cmd_grad)
    p = sub.add_parser("ir", help="print the IR of FILE.py:FUNCTION (or of its gradient)")
    p.add_argument("target", help="FILE.py:FUNCTION")
    p.add_argument("--wrt", help="print the gradient's IR with respect to these arguments")
    p.set_defaults(run=cmd_ir)
    sub.add_parser("train", help="train a sample: adcompiler train SAMPLE.py --help")
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UnsupportedSyntaxError as err:
        print(err, file=sys.stderr)
        return 1
    except (TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
