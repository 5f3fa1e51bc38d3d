"""``python -m controlplane`` is ``brik-cloud``."""

from controlplane.cli import main

main()
