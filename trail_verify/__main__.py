import sys

from trail_verify.cli import main

sys.exit(main())
