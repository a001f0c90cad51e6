"""The Airlock server."""

import os

# gRPC's C core writes its own lines to stderr (an address in use, for instance), which are not
# JSON and repeat what the server reports itself: silent unless the operator asks for them
# (GRPC_VERBOSITY=debug). Set before anything imports grpc, which reads it once.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
