"""`python -m segzoo` is the `segzoo` command."""

from segzoo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
