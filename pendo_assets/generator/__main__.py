import sys

from pendo_assets.generator.cli import main

sys.exit(main())
