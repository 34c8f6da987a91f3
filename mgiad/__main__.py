"""``python -m mgiad`` (also ``torchrun ... -m mgiad train``)."""

from mgiad.cli import main

raise SystemExit(main())
