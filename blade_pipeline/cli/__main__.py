"""``python -m blade_pipeline.cli``: the `blade` command."""

from blade_pipeline.cli import main

raise SystemExit(main())
