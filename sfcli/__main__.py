from sfcli.cli import main

# `python -m sfcli` and `torchrun -m sfcli` run the same CLI as the `sfcli` script.
main()
