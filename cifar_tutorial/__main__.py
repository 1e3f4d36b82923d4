"""Run the command line: ``python -m cifar_tutorial --help``."""

from cifar_tutorial.cli import main

raise SystemExit(main())
