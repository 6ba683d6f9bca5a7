"""``dashboard --print-command``: the plain optuna-dashboard command, which reads the storage
URL from $VAE_SWEEP_STORAGE and says so, so no password is printed or put on argv."""

import os
import shlex
import subprocess

import optuna

from sweep.cli import main
from sweep.commands.dashboard import plain_command


def test_the_plain_command_reads_the_url_from_the_environment_and_prints_no_password():
    url = "postgresql://sweep:hunter2@db.example/sweeps"
    note, command = plain_command(url, "127.0.0.1", 8080, "/store/artifacts", url_in_env=False)
    assert "hunter2" not in note + command
    assert note == ("# the storage URL comes from $VAE_SWEEP_STORAGE, so no password goes on "
                    "the command line; set it first: export VAE_SWEEP_STORAGE="
                    "'postgresql://sweep:***@db.example/sweeps' (with the password in place "
                    "of ***)")
    assert command == ('optuna-dashboard "$VAE_SWEEP_STORAGE" --host 127.0.0.1 --port 8080 '
                       "--artifact-dir /store/artifacts")
    # Through a shell, the variable becomes the command's first argument, whole.
    echoed = subprocess.run(["bash", "-c", "printf '%s\\n'" + command[len("optuna-dashboard"):]],
                            env=dict(os.environ, VAE_SWEEP_STORAGE=url), capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert echoed == [url, "--host", "127.0.0.1", "--port", "8080", "--artifact-dir",
                      "/store/artifacts"]


def test_print_command_names_the_variable_and_how_to_set_it(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name="a", storage=url)
    monkeypatch.delenv("VAE_SWEEP_STORAGE", raising=False)
    assert main(["dashboard", "--storage", url, "--print-command"]) == 0
    note, command = capsys.readouterr().out.splitlines()
    assert note.endswith(f"set it first: export VAE_SWEEP_STORAGE={shlex.quote(url)}")
    assert url not in command and command.startswith('optuna-dashboard "$VAE_SWEEP_STORAGE" ')
    monkeypatch.setenv("VAE_SWEEP_STORAGE", url)  # the --storage default: already set
    assert main(["dashboard", "--print-command"]) == 0
    note, again = capsys.readouterr().out.splitlines()
    assert note.endswith("(set in this shell)") and again == command
