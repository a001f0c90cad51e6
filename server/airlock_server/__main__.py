"""`python -m airlock_server` is `airlock-server`."""

import sys

from airlock_server.launch import main

sys.exit(main())
