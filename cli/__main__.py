"""``python -m cli``: the same as the ``mailonboard`` console command."""

from cli.app import main

if __name__ == "__main__":
    main()
