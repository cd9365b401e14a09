"""The images the container tests share: the Debian base, heatup's image on it and the
compose test's stand-ins, built once per run from nothing and removed at its end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.container.docker import RUN, base_image, build, dangling, remove_image, stand_in


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    started = time.monotonic()
    made = base_image(tmp_path_factory.mktemp("rootfs"))
    print(f"\nDebian base made in {time.monotonic() - started:.0f} s")
    try:
        yield made
    finally:
        remove_image(made)


@pytest.fixture(scope="session")
def image(base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    started, before = time.monotonic(), dangling()
    built = build(base, f"heatup-test:{RUN}", tmp_path_factory.mktemp("context"))
    print(f"\nimage built in {time.monotonic() - started:.0f} s")
    try:
        yield built
    finally:
        remove_image(built, *(dangling() - before))


@pytest.fixture(scope="session")
def stand_ins(base: str) -> Iterator[Callable[[], tuple[str, str]]]:
    """The PostgreSQL and Prometheus stand-ins (``images/``), built in the background from
    the moment this fixture is set up, beside heatup's image (request it before ``image``);
    calling it waits for them and names them."""
    with ThreadPoolExecutor(2) as pool:
        builds = [pool.submit(stand_in, name, base) for name in ("postgres", "prometheus")]
        try:
            yield lambda: (builds[0].result(), builds[1].result())
        finally:  # each build has ended; one that failed tagged nothing
            remove_image(*(build.result() for build in builds if build.exception() is None))
