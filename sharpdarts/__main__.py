"""`python -m sharpdarts` is the `sharpdarts` command."""

import sys

from sharpdarts.face.cli import main

sys.exit(main())
