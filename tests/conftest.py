"""Shared fixtures: small generators and data, built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def faces():
    from data_gen.fonts import discover_fonts

    return discover_fonts()


@pytest.fixture(scope="session")
def generator(faces):
    from data_gen.characters import CharacterConfig, CharacterGenerator

    return CharacterGenerator(CharacterConfig(), faces=faces)


@pytest.fixture(scope="session")
def clean_generator(faces):
    """No noise at all, fixed grays: every ink pixel belongs to a true character."""
    from data_gen.characters import CharacterConfig, CharacterGenerator

    cfg = CharacterConfig(lines=(0, 0), distractor_prob=0.0, background=(0, 0), ink=(255, 255),
                          max_defects=3, multi_prob=0.5)
    return CharacterGenerator(cfg, faces=faces)
