"""``python -m mgiad`` (also ``torchrun ... -m mgiad train``)."""

from .cli import main

raise SystemExit(main())
