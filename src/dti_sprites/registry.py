"""Name -> factory tables, so that a config can name an encoder, a transformation or a
dataset and adding one touches a single file."""

from typing import Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A table of factories found by name (and aliases), with errors that list the choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        def decorator(factory: T) -> T:
            for name in names:
                if name in self._entries:
                    raise KeyError(f"{self.kind} {name!r} is registered twice")
                self._entries[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def factories(self) -> list[T]:
        """Each factory once (its aliases aside), in the order registered."""
        return list(dict.fromkeys(self._entries.values()))
