"""`python -m intents`: the intent matcher's command line on its own."""

import sys

from intents.cli import main

sys.exit(main())
