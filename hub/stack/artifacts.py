"""Resolving the broker's and the registry's artifacts from Maven Central.

Nothing is downloaded from project websites: Kafka's jars come from
``org.apache.kafka:kafka_2.13`` and its dependencies, Apicurio Registry from its runnable
distribution ``io.apicurio:apicurio-registry-app:<version>:tar.gz:all``. Maven keeps its
usual local repository (``~/.m2``); the classpath file and the unpacked registry live in the
hub's cache directory, both outside the project tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hub.stack.errors import ArtifactError
from hub.stack.tools import find_maven, java_env

__all__ = [
    "APICURIO_VERSION",
    "KAFKA_VERSION",
    "Versions",
    "cache_dir",
    "kafka_classpath",
    "registry_home",
    "registry_runner",
]

# Pinned: the broker and registry every test, demo and CI run uses.
KAFKA_VERSION = "4.1.1"
# 3.0.x is the newest Apicurio line that runs on Java 17 (3.1+ is compiled for Java 21);
# a newer one can be chosen with HUB_APICURIO_VERSION plus HUB_REGISTRY_JAVA_HOME.
APICURIO_VERSION = "3.0.9"
LOG4J_VERSION = "2.25.3"
# Kafka's own pom still names slf4j-api 1.7; the Log4j 2 binding for SLF4J 2 needs 2.x.
SLF4J_VERSION = "2.0.17"

MAVEN_TIMEOUT_S = 900.0

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>vn.gov.nghean.hub</groupId>
  <artifactId>local-kafka</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


@dataclass(frozen=True)
class Versions:
    kafka: str = KAFKA_VERSION
    apicurio: str = APICURIO_VERSION


def cache_dir() -> Path:
    """Where resolved artifacts live: ``$HUB_CACHE_DIR`` or ``~/.cache/nghean-hub``."""
    root = os.environ.get("HUB_CACHE_DIR") or str(Path.home() / ".cache" / "nghean-hub")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run_maven(args: list[str], cwd: Path, what: str) -> None:
    mvn = find_maven()
    cmd = [str(mvn), "-B", "-q", *args]
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=java_env(),
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ArtifactError(
            f"Maven did not resolve {what} within {MAVEN_TIMEOUT_S:.0f}s: "
            "is Maven Central reachable?"
        ) from None
    if proc.returncode != 0:
        detail = _maven_reason(proc.stdout + proc.stderr)
        raise ArtifactError(f"cannot resolve {what} from Maven Central: {detail}")


def _maven_reason(output: str) -> str:
    """The most telling line of Maven's output, so the user gets one line, not a page."""
    for marker in ("Could not find artifact", "Could not resolve", "Failure to find", "ERROR"):
        for line in output.splitlines():
            if marker in line:
                return line.replace("[ERROR]", "").strip()[:300]
    return (output.strip().splitlines() or ["mvn failed with no output"])[-1][:300]


def kafka_classpath(version: str = KAFKA_VERSION) -> str:
    """The broker's classpath, resolving it with Maven on first use."""
    work = cache_dir() / f"kafka-{version}"
    cp_file = work / "classpath.txt"
    if cp_file.is_file():
        classpath = cp_file.read_text().strip()
        if classpath and all(Path(p).is_file() for p in classpath.split(os.pathsep)):
            return classpath
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(
        _POM.format(kafka=version, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION)
    )
    tmp = work / "classpath.txt.tmp"
    _run_maven(
        ["dependency:build-classpath", f"-Dmdep.outputFile={tmp}"],
        cwd=work,
        what=f"org.apache.kafka:kafka_2.13:{version}",
    )
    tmp.replace(cp_file)
    return cp_file.read_text().strip()


def registry_runner(version: str = APICURIO_VERSION) -> Path:
    """The jar that starts the registry: ``quarkus-run.jar`` (fast-jar layout, 3.1+) or the
    legacy ``*-runner.jar`` of 3.0.x."""
    home = registry_home(version)
    runner = _runner_in(home)
    if runner is None:
        raise ArtifactError(f"{home} holds no quarkus-run.jar or *-runner.jar")
    return runner


def _runner_in(home: Path) -> Path | None:
    if (home / "quarkus-run.jar").is_file():
        return home / "quarkus-run.jar"
    legacy = sorted(home.glob("*-runner.jar")) if home.is_dir() else []
    return legacy[0] if legacy else None


def registry_home(version: str = APICURIO_VERSION) -> Path:
    """The unpacked Apicurio Registry distribution."""
    home = cache_dir() / f"apicurio-registry-{version}"
    if _runner_in(home) is not None:
        return home
    download = cache_dir() / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
    _run_maven(
        ["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={download}"],
        cwd=download,
        what=artifact,
    )
    archive = download / f"apicurio-registry-app-{version}-all.tar.gz"
    if not archive.is_file():
        raise ArtifactError(f"Maven reported success but {archive} is missing")
    staging = home.with_name(home.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ArtifactError(f"cannot unpack {archive}: {exc}") from exc
    # The archive may or may not have one top-level folder; find the runner either way.
    runners = [*staging.rglob("quarkus-run.jar"), *staging.rglob("*-runner.jar")]
    if not runners:
        raise ArtifactError(f"{archive} holds no quarkus-run.jar or *-runner.jar")
    runners[0].parent.rename(home)
    shutil.rmtree(staging, ignore_errors=True)
    return home
