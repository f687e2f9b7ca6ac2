"""Run a paper table's sweep: tools/sweep.py configs/sweeps/T1_base2new.yaml [--dry-run] [--gpus 0,1] [--slurm].

See dapt/tools/sweep.py and the README section "Reproducing the paper"."""
import sys

from dapt.tools.sweep import main

if __name__ == "__main__":
    sys.exit(main())
