"""``python -m portrait.evaluate``, a command other checks call: see :mod:`portrait.training.evaluate`."""
from portrait.training.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
