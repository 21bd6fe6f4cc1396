import sys

from featdistill_core.cli import main

sys.exit(main())
