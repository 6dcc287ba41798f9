"""``mars doctor``: the self-test to run on a new node before a long GPU run.

    stack.py    the installed packages against the pins of pyproject.toml and its extras (no heavy imports)
    machine.py  accelerators, CUDA, driver and NCCL (through probe.py, in a child process), disk, CPUs, Ray
    smoke.py    the embedded default's loop on the tiny model: train, resume, merge, inference, evaluation, verl
    procs.py    running one smoke part: its log, time, peak memory, timeout and the processes it left behind
    report.py   the table on the terminal and the JSON report
    cli.py      the command line and the order of the checks

Every check is a small function returning ``Check`` rows; nothing here imports ``mars.training`` or
``mars.engines``: trainings run through the ``mars`` command line, as a user runs them.
"""
