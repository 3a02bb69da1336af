"""Validation of JSON against the schemas shipped in kinetics/schemas (with the
``jsonschema`` library of the ``test`` extra): the tests call :func:`validate` on every
JSON file and object they make kinetics write."""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from kinetics.jsonfile import SCHEMAS, load_schema, schema_path


@functools.cache
def registry() -> Registry:
    """Every shipped schema under its file name, as the ``$ref``s name them."""
    return Registry().with_resources(
        (schema_path(name).name, Resource.from_contents(load_schema(name),
                                                        default_specification=DRAFT202012))
        for name in SCHEMAS)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), registry=registry())


def validate(instance: Any, name: str) -> Any:
    """Raise jsonschema.ValidationError unless ``instance`` fits schema ``name``; else
    return ``instance``."""
    validator(name).validate(instance)
    return instance


def errors(instance: Any, name: str) -> list[str]:
    """The messages of every way ``instance`` fails schema ``name`` (empty: it fits)."""
    return [e.message for e in validator(name).iter_errors(instance)]
