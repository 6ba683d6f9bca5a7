"""``python -m sweep bench``: the project's speed against its limit and against a
user's plain Optuna + Lightning script (``user_script``).
"""
