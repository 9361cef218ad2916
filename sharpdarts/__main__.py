"""`python -m sharpdarts` is the `sharpdarts` command."""
import sys

from sharpdarts.cli import main

sys.exit(main())
