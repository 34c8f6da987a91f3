"""Custom operators: exact fast paths of the channel transfers (and native kernels).

Imports nothing else of the package; :mod:`mgiad.nn` builds on it."""
