"""Development tools: how the tracker's own claims are checked on a machine (the merge gate's
behaviour, agreement with do_bench, the GPU's noise, the flash kernel's numbers, the core on a
GPU, the shipped history's protocol labels, the published site drawn offline). Run from the
repository root as modules, ``python3 -m tools.<name> --help``, so that perfmodel, benchmarks/
and each other import without path edits; tests import them as modules too. What users run is
in the package (perfmodel); scripts/ only sets up machines."""
