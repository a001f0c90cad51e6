"""`python -m airlock_server` is `airlock-server`."""

import sys

from airlock_server.cli import main

sys.exit(main())
