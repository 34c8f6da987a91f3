"""Package data: one experiment file per table of the paper and one for Figure 7 (see
:mod:`mgiad.experiments.spec`)."""
