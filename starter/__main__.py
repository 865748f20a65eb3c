"""``python -m starter``: the ``enrollments`` command line."""

from starter.cli import main

if __name__ == "__main__":
    main()
