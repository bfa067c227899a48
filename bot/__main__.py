"""`python -m bot` is the `seguibot` command."""

import sys

from bot.cli import main

sys.exit(main())
