"""The images the container tests share: the Debian base and heatup's image on it, built
once per run from nothing and removed at its end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.container.docker import RUN, base_image, build, dangling, remove_image


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
