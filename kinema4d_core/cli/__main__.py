"""`python -m kinema4d_core.cli` == the `kinema4d` command."""

import sys

from kinema4d_core.cli import main

sys.exit(main())
