"""`python -m benchmarks.cli ...` runs the `navila-agent` CLI (e.g. under `accelerate launch` or `torchrun`)."""

from benchmarks.cli import main

main()
