import sys

from scaler.commands.cli import main

sys.exit(main())
