"""Average the result lines of several seeds (CoOp's parse_test_res habit).

    python tools/parse_results.py output/base2new/train_base/oxford_pets/shots_16/MaPLe/cfg
    python tools/parse_results.py DIR --keyword macro_f1 --ci95
    python tools/parse_results.py --base BASE_DIR --new NEW_DIR      # base-to-novel with HM

A run folder is any folder holding a log.txt (later log.txt-<time> files of the same folder count
too); the value of a run is its final test's "* <keyword>: X%" line. Runs are grouped by method and
config (the saved config.yaml without seed and output folder): runs of different groups are never
averaged together; the tool names the groups and stops (narrow the folder, or pass --group N).
"""
import sys

from dapt.tools.parse_results import main

if __name__ == "__main__":
    sys.exit(main())
