"""`python -m lth ...` is the `lth` command (and what torchrun starts: `torchrun ... -m lth train ...`)."""

import sys

from lth.cli import main

sys.exit(main())
