"""Write the paper's tables from a sweep's runs: tools/tables.py OUTPUT_ROOT [--table T1].

See dapt/tools/tables.py and the README section "Reproducing the paper"."""
import sys

from dapt.tools.tables import main

if __name__ == "__main__":
    sys.exit(main())
