import sys

from kinetics.cli import main

sys.exit(main())
