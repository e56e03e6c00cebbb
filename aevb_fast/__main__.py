# `python -m aevb_fast` is the application's command line; the library itself never imports it.
from .training.cli import main

raise SystemExit(main())
