"""The commands of ``resnet-bench``, side by side: one module per command.

Each module has ``add_parser(subparsers)``, which declares its arguments, and ``main(args)``,
which checks what the library cannot (paths given on the command line), calls the library and
prints. :mod:`resnet_bench.cli` only dispatches. A command never imports another command:
what two of them share lives in a library module (timing, provenance, the report package).
Command modules import nothing heavy at module level, so ``resnet-bench --help`` and a user's
mistake are answered before TensorFlow loads.
"""
