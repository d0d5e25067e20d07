"""The perfmodel commands, one module per verb (as asv's own ``commands/``): each has
``add_parser(sub)``, which adds its subcommand to the parser that perfmodel/cli.py builds and
sets ``func``, and ``main(args)``, which runs it and returns the exit status.

Importing this package or a command module imports no torch: what measures is imported when a
command runs."""
