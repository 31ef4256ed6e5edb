import sys

from netdecl.cli import main

sys.exit(main())
