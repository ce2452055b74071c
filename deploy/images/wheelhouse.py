"""Fill var/images/wheels/ with every dependency of pyproject.toml, as wheels for
the images' Python (Debian bookworm's 3.11.2), so image builds need no package index.

    python deploy/images/wheelhouse.py [--python-version 3.11.2] [--dir var/images/wheels]

`pip download --python-version` picks wheels for the target but evaluates
dependency markers for the Python running pip (pip issue 11664): redis needs
async-timeout below 3.11.3, which a newer host Python would leave out. So after
pip's pass, the markers of every downloaded wheel are evaluated for the target
and what is missing is downloaded too, until nothing is. The image build then
installs with its own pip against this directory alone and runs `pip check`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "any",
]


def download(requirements: list[str], target: str, wheels: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--python-version", target, "--implementation", "cp",
        "--abi", f"cp{target.replace('.', '')[:3]}", "--abi", "abi3", "--abi", "none",
        "--dest", str(wheels),
    ]  # fmt: skip
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + requirements, check=True)


def missing(wheels: Path, environment: dict) -> list[str]:
    present = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels.glob("*.whl")}
    wanted = []
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = Parser().parsestr(archive.read(name).decode())
        for line in metadata.get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({**environment, "extra": ""}):
                continue
            if canonicalize_name(requirement.name) not in present:
                requirement.marker = None
                wanted.append(str(requirement))
    return sorted(set(wanted))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.11.2")
    parser.add_argument("--dir", type=Path, default=ROOT / "var" / "images" / "wheels")
    args = parser.parse_args()
    target = args.python_version
    environment = {
        **default_environment(),
        "python_version": ".".join(target.split(".")[:2]),
        "python_full_version": target,
        "implementation_version": target,
    }
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = list(pyproject["project"]["dependencies"])
    download(requirements, target, args.dir)
    for _ in range(10):
        more = missing(args.dir, environment)
        if not more:
            break
        print(f"wheelhouse: also for Python {target}: {', '.join(more)}", file=sys.stderr)
        download(more, target, args.dir)
    else:
        print("wheelhouse: the dependencies did not close after 10 rounds", file=sys.stderr)
        return 1
    (args.dir / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
