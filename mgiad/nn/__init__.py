"""Building blocks of the multigrid networks: the smoothing step (eq. 3), FAS resolution
transfers (eqs. 6–7), SiC (Algorithm 2), recomputation in backward and the validation of
hyper-parameters. Imports only :mod:`mgiad.ops`."""
