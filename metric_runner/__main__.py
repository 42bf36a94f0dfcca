"""`python -m metric_runner [overrides]`, the same as `metric-run`; under
`torchrun --nproc_per_node=N -m metric_runner [overrides]` each process trains its share of
every batch (DDP)."""

from .runner.cli import main

if __name__ == "__main__":
    main()
