"""The ``scaler`` command line: one module per command."""

import os

# gRPC's C core reads GRPC_VERBOSITY when it is first loaded, which a command's imports do
# before the command runs: set here, before any of them, its documented default (ERROR)
# takes effect from the start, so that connection events such as "Got goaway" (INFO) stay
# off stderr. An explicit setting still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
