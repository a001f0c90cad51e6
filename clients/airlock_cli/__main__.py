"""`python -m airlock_cli`: the same as the `airlock` command."""

import sys

from airlock_cli.run import main

sys.exit(main())
