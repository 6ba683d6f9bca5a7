"""The sweep service: search space, storage, Optuna study runner and command line."""
