"""``StudyExists``: what ``sweep.create_study`` raises for a study name that is taken, unless
``load_if_exists``. It is Optuna's ``DuplicatedStudyError`` (what ``optuna.create_study``
raises then), with the name, which the command line's ``--if-new`` reports. A module of its
own because it imports Optuna, which ``import sweep`` does not."""

from __future__ import annotations

import optuna


class StudyExists(optuna.exceptions.DuplicatedStudyError):
    """Study ``study_name`` exists in ``where`` (its storage URL as shown)."""

    def __init__(self, study_name: str, where: str) -> None:
        super().__init__(f"study {study_name!r} already exists in {where} "
                         "(load_if_exists=True opens it)")
        self.study_name = study_name
