import sys

from clinlinker.cli import main

sys.exit(main())
