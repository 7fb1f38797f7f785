"""`python -m adcompiler` runs the command line."""

from adcompiler.cli import main

raise SystemExit(main())
