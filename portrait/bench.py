"""``python -m portrait.bench``, the live benchmark against the peer: see :mod:`portrait.training.bench`."""
from portrait.training.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
