"""Kernel benchmarks of csfpk against the tools users would otherwise pick (issue 6).

Run ``python -m benchmarks`` (or ``csfpk bench``) from the repository folder; ``--help`` lists the
options and ``benchmarks/README.md`` defines the workloads, tolerances and error measure.
Importing this package is cheap: the harness modules load numpy, scipy and csfpk only when run.
"""
