import sys

from emcp.cli import main

sys.exit(main())
