"""The netbridge runs a `python3 -m <module>` command in its own process (one
interpreter start less per sandbox) and any other command as a subprocess."""

from __future__ import annotations

import os
import sys

from agentloop.sandboxes.netbridge import python_module, run_module_here


def test_only_a_python_dash_m_command_for_this_interpreter_runs_in_process():
    assert python_module(["python3", "-m", "agentloop.runner"]) == "agentloop.runner"
    assert python_module([sys.executable, "-m", "agentloop.runner", "x"]) == "agentloop.runner"
    assert python_module(["python3", "-c", "pass"]) is None
    assert python_module(["sh", "-m", "x"]) is None
    assert python_module(["/opt/other/python3.9", "-m", "agentloop.runner"]) is None


def test_the_module_runs_here_as_main_with_its_args_and_its_exit_code(tmp_path, monkeypatch):
    (tmp_path / "bridged_probe.py").write_text(
        "import os, sys\n"
        "if __name__ == '__main__':\n"
        "    open(sys.argv[1], 'w').write(f'{os.getpid()} {sys.argv[2]}')\n"
        "    sys.exit(int(sys.argv[2]))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    out = tmp_path / "out.txt"

    assert run_module_here("bridged_probe", [str(out), "3"]) == 3

    assert out.read_text() == f"{os.getpid()} 3"  # this process, with the command's args
