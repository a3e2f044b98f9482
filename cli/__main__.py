"""`python -m cli ...`: the `factory` command where its script is not installed (cluster jobs run it this way)."""

from cli.main import main

main()
