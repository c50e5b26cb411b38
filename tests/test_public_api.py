"""The public surface: everything exported is real, sorted, and nothing private leaks."""

from __future__ import annotations

import inspect
import re

import aqueue
import aqueue.exceptions


def test_all_is_sorted_and_every_name_exists() -> None:
    assert list(aqueue.__all__) == sorted(aqueue.__all__)
    for name in aqueue.__all__:
        assert hasattr(aqueue, name), name


def test_no_private_name_is_exported() -> None:
    assert [name for name in aqueue.__all__ if name.startswith("_") and name != "__version__"] == []


def test_every_public_attribute_of_the_package_is_in_all() -> None:
    public = {
        name
        for name, value in vars(aqueue).items()
        if not name.startswith("_") and not isinstance(value, type(aqueue))
    }
    assert public <= set(aqueue.__all__)


def test_every_error_derives_from_aqueue_error_and_is_exported() -> None:
    # Retry is a request, ErrorType the names of errors: no errors themselves.
    for name in set(aqueue.exceptions.__all__) - {"Retry", "ErrorType"}:
        error = getattr(aqueue.exceptions, name)
        assert issubclass(error, aqueue.AqueueError)
        assert getattr(aqueue, name) is error


def test_errors_are_also_the_builtin_a_caller_would_catch() -> None:
    assert issubclass(aqueue.ResultTimeout, TimeoutError)
    assert issubclass(aqueue.InvalidArguments, TypeError)
    assert issubclass(aqueue.ConnectionFailed, ConnectionError)
    assert issubclass(aqueue.TaskTimeout, aqueue.TaskFailed)


def test_every_exported_class_and_function_says_it_is_aqueues() -> None:
    """``aqueue.TaskFailed``, not ``aqueue.exceptions.TaskFailed``: in reprs, tracebacks and
    the error type of a job that raised it."""
    for name in aqueue.__all__:
        value = getattr(aqueue, name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__ == "aqueue", name


def test_the_error_types_aqueue_records_are_strings_of_its_namespace() -> None:
    for error_type in aqueue.ErrorType:
        assert error_type == error_type.value
        assert error_type.startswith("aqueue.")
    assert aqueue.JobCancelled.__module__ + ".JobCancelled" == aqueue.ErrorType.CANCELLED


def _private_types(annotation: str, names: dict[str, object]) -> set[str]:
    """The aqueue types ``annotation`` names that the package does not export."""
    exported = {id(getattr(aqueue, name)) for name in aqueue.__all__}
    found = set()
    for word in re.findall(r"[A-Za-z_]\w*", annotation):
        value = names.get(word)
        module = getattr(value, "__module__", "") or ""
        if isinstance(value, type) and module.startswith("aqueue") and id(value) not in exported:
            found.add(f"{module}.{value.__qualname__}")
    return found


def test_no_public_property_of_an_exported_class_returns_a_private_type() -> None:
    leaks = set()
    for name in aqueue.__all__:
        value = getattr(aqueue, name)
        for attribute, member in vars(value).items() if isinstance(value, type) else ():
            if attribute.startswith("_") or not isinstance(member, property) or not member.fget:
                continue
            returned = member.fget.__annotations__.get("return", "")
            for leak in _private_types(str(returned), member.fget.__globals__):
                leaks.add(f"{name}.{attribute}: {leak}")
    assert leaks == set()


def test_no_public_attribute_of_the_main_objects_holds_a_private_type() -> None:
    app = aqueue.App()

    @app.task
    async def ping(n: int) -> int:
        return n

    objects = [app, ping, ping.s(1), app.queue(), app.job("default:ab"), aqueue.Worker(app)]
    exported = {getattr(aqueue, name) for name in aqueue.__all__}
    leaks = {
        f"{type(value).__name__}.{attribute}: {type(held).__module__}.{type(held).__qualname__}"
        for value in objects
        for attribute in dir(value)
        if not attribute.startswith("_")
        and not callable(held := getattr(value, attribute))
        and type(held).__module__.startswith("aqueue")
        and type(held) not in exported
    }
    assert leaks == set()
