"""The run layer below the entry points: an experiment from a RunConfig (experiment.py), training
its steps (stepping.py), scoring finished steps (scoring.py), and the command-line wrapper
(cli.py). Nothing here reads flags."""
