"""``python -m probeops_cli``: the same as the ``probeops`` script."""
from probeops_cli.main import cli

if __name__ == "__main__":
    cli(prog_name="probeops")
