"""``python -m tael`` runs the ``tael`` command line."""

from ._cli import main

if __name__ == "__main__":
    main()
