import sys

from inferd.commands.cli import main

sys.exit(main())
