"""`spoke.hubspot.__all__` is exactly the public surface, and everything in it exists."""

from __future__ import annotations

import spoke.hubspot


def test_all_members_exist_and_are_public() -> None:
    for name in spoke.hubspot.__all__:
        assert hasattr(spoke.hubspot, name), name
        assert not name.startswith("_"), name


def test_all_has_no_duplicates() -> None:
    names = spoke.hubspot.__all__
    assert len(names) == len(set(names))


def test_every_public_import_is_exported() -> None:
    # Names defined or imported at package level without a leading underscore are exported;
    # submodules are reachable as attributes but are not part of the curated surface.
    public = {
        name
        for name, value in vars(spoke.hubspot).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) != "builtins"
        and not isinstance(value, type(spoke.hubspot))
    }
    assert public == set(spoke.hubspot.__all__)


def test_exported_classes_come_from_spoke_hubspot() -> None:
    for name in spoke.hubspot.__all__:
        member = getattr(spoke.hubspot, name)
        module = getattr(member, "__module__", None)
        if isinstance(member, type) or callable(member):
            assert module is not None
            assert module.startswith("spoke.hubspot"), (name, module)
