"""Run a TLS-only Dask cluster (scheduler and N workers) in one container.

Data flows one way: environment -> validated settings (`settings`, `tls`) -> private files on
tmpfs (`private_files`) -> processes (`cluster`, `supervisor`). `__main__` wires the steps and owns
the exit codes.
"""
