"""Per-process cache of what is expensive to load: robot models, calibrations, generation
backends (model weights) and opened bags.

One ``Resources`` is created by whoever runs a batch (a CLI command, a benchmark, one Ray actor)
and passed to the episode functions, so a model is loaded once per process, never per episode,
and released explicitly (``release_backend``) before the next one is loaded. Nothing here is a
module global: two ``Resources`` share nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable


class Resources:
    """Loaded objects by key. ``max_backends``: backends kept at once (the least recently used
    one is released first; model weights are the largest thing a process holds)."""

    def __init__(self, *, max_backends: int = 1) -> None:
        self.max_backends = max(1, int(max_backends))
        self._items: dict[tuple[str, Hashable], Any] = {}

    def get(self, kind: str, key: Hashable, make: Callable[[], Any]) -> Any:
        """The cached ``(kind, key)`` object, made with ``make()`` on first use."""
        k = (kind, key)
        if k not in self._items:
            if kind == "backend":
                held = [x for x in self._items if x[0] == "backend"]
                for old in held[: max(0, len(held) - self.max_backends + 1)]:
                    del self._items[old]
            self._items[k] = make()
        else:                                   # most recently used last
            self._items[k] = self._items.pop(k)
        return self._items[k]

    def put(self, kind: str, key: Hashable, value: Any) -> None:
        self._items[(kind, key)] = value

    def robot(self, name: str) -> Any:
        """``robot.load_robot(name)``."""
        from kinema4d_core.robot import load_robot

        return self.get("robot", name, lambda: load_robot(name))

    def camera(self, path: str) -> Any:
        """``camera.load_calibration(path)``."""
        from kinema4d_core.camera import load_calibration

        return self.get("camera", str(path), lambda: load_calibration(path))

    def backend(self, name: str, options: tuple[tuple[str, Any], ...] = ()) -> Any:
        """``registry.make_backend(name, **options)`` (weights load on the backend's first use)."""
        from kinema4d_core.registry import make_backend

        return self.get("backend", (name, tuple(options)), lambda: make_backend(name, **dict(options)))

    def release_backend(self, name: str, options: tuple[tuple[str, Any], ...] = ()) -> None:
        """Drop a backend (and with it its model weights, once nothing else refers to them)."""
        self._items.pop(("backend", (name, tuple(options))), None)

    def held(self, kind: str | None = None) -> list[Hashable]:
        """Keys held, optionally of one kind (for logs and tests)."""
        return [k for (kd, k) in self._items if kind is None or kd == kind]

    def clear(self) -> None:
        self._items.clear()
