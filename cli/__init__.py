"""The ``cellbox-nb`` command line, installed as the sub-package ``cellbox_nb._cli`` (entry point: main.main)."""
