"""``python -m calcstream.cli``: the ``calcstream`` command."""

import sys

from calcstream.cli.main import main

sys.exit(main())
