import sys

from jinvert.cli import main

sys.exit(main())
