"""``python -m sacnn_lab ...``: the ``sacnn-lab`` command line (also under ``torchrun -m sacnn_lab``)."""

from .cli import main

raise SystemExit(main())
