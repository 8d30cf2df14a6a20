"""`python -m ncood` (and `torchrun -m ncood`) runs the CLI."""

from ncood.cli import main

if __name__ == "__main__":
    main()
