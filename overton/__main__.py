import sys

from overton.cli import main

sys.exit(main())
