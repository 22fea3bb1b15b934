"""`python -m lcsynth.cli`, as the `lcsynth` console script."""

from lcsynth.cli.app import main

if __name__ == "__main__":
    main()
