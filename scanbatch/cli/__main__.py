"""`python -m scanbatch.cli`: the same as the `scanbatch` command."""

import sys

from scanbatch.cli import main

sys.exit(main())
