"""`python -m deepthings` is the `deepthings` command."""

from deepthings.cli import main

raise SystemExit(main())
