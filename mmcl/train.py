"""Training entry point: ``accelerate launch mmcl/train.py [--config CONFIG] [dotted.key=value ...]``.

With no arguments it trains CTR-GCN on the built-in synthetic set (generated into ``cache/`` on first use).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, this file's directory would shadow top-level packages; import mmcl from its install instead.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(here)]
    from mmcl.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
