"""Reproducing the paper: its tables and Figure 7 as experiment files (``tables/``), their
specification (``spec``), the weight-count check (``paper``), sweeps of training runs
(``sweep``), and reports and plots that read the sweeps' records (``report``, ``plot``)."""
