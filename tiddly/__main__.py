"""``python -m tiddly``: the same as the ``tiddly`` command."""
import sys

from tiddly.cli import main

sys.exit(main())
