"""The backend registry: every generation backend's name, options, loader and role, in one place.

The CLI choices and flags (``simulate``, ``replay``, ``evaluate``), the inference node's backend
parameters, the bring-up graph (``kinema4d_ros.graph``) and evaluation all read this registry,
so a backend registered here is offered everywhere. Registering one is one call:

    register_backend(BackendSpec(
        name="kinema4d-mini", summary="model: Kinema4D mini checkpoint", factory=MiniBackend,
        options=(BackendOption("checkpoint", Path, None, "checkpoint folder", required=True,
                               param="checkpoint_path"), *MODEL_OPTIONS)))

Each option has a public name used as CLI flag (``--checkpoint``) and node parameter
(``checkpoint_path``), so one flag serves several backends (``--checkpoint`` is ``checkpoint``
for kinema4d and ``checkpoint_dir`` for kinema4d-tiny). The built-in specs are registered by
``kinema4d_core.backends`` (imported on first use); add a module to ``BACKEND_MODULES`` to have
its backends registered too.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from kinema4d_core.errors import ConfigError

#: the backend every command, node and launch file uses unless told otherwise
DEFAULT_BACKEND = "static-scene"
#: modules whose import registers backends (imported on the first registry query)
BACKEND_MODULES: list[str] = ["kinema4d_core.backends"]


@dataclass(frozen=True)
class BackendOption:
    """One keyword option of a backend's factory.

    name: the factory's keyword; type: ``str``, ``int``, ``float``, ``bool`` or ``Path``;
    default: the factory's default (None: none); flag: the CLI flag without ``--`` (default:
    name with ``-``); param: the node / bring-up parameter name (default: name).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    required: bool = False
    flag: str | None = None
    param: str | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or self.name.replace("_", "-")

    @property
    def param_name(self) -> str:
        return self.param or self.name

    def coerce(self, value: Any, backend: str) -> Any:
        """``value`` (possibly a string from a flag or parameter) as this option's type."""
        try:
            if self.type is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1")
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{value!r} is not a {self.type.__name__}", field=f"{backend}.{self.name}",
                              fix=self.help) from None
        if self.choices is not None and str(value) not in self.choices:
            raise ConfigError(f"{value!r} is not one of {list(self.choices)}", field=f"{backend}.{self.name}",
                              fix=f"use one of {list(self.choices)}")
        return value


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend.

    factory(**options) -> Backend builds it (model backends read their checkpoint's config there
    but load weights on ``load()`` / the first ``generate``). is_baseline: a reference without a
    model, labelled as such everywhere. fixed_geometry: it generates the frame count and size of
    its checkpoint (``backend.num_frames`` / ``backend.size``); otherwise any. default_steps:
    sampling steps when a caller leaves them 0.
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    options: tuple[BackendOption, ...] = ()
    is_baseline: bool = False
    fixed_geometry: bool = False
    default_steps: int = 50

    def option(self, name: str) -> BackendOption | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Unknown options, missing required ones and wrong types -> ConfigError; else coerced options."""
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            raise ConfigError(f"{self.name} does not take the options {unknown}", field="backend",
                              fix=f"{self.name} takes {list(self.option_names)}" if self.options
                              else f"{self.name} takes no options")
        missing = self.missing(options)
        if missing:
            raise ConfigError(f"backend {self.name} needs {[o.name for o in missing]}", field="backend",
                              fix="pass " + " and ".join(f"--{o.cli_flag} ({o.param_name})" for o in missing)
                                  + ", or use --backend static-scene")
        return {k: (v if v is None else self.option(k).coerce(v, self.name)) for k, v in options.items()}

    def missing(self, options: Mapping[str, Any]) -> list[BackendOption]:
        """The required options absent (or empty) from ``options``."""
        return [o for o in self.options if o.required and options.get(o.name) in (None, "")]

    def load(self, **options: Any) -> Any:
        """The backend built from ``options`` (checked first). Weights load on ``backend.load()``."""
        return self.factory(**self.check_options(options))

    @staticmethod
    def geometry(backend: Any) -> tuple[int | None, tuple[int, int] | None]:
        """(frames, (height, width)) a built backend generates; None where it takes any."""
        frames = getattr(backend, "num_frames", None)
        size = getattr(backend, "size", None)
        return (None if frames is None else int(frames)), (None if size is None else (int(size[0]), int(size[1])))

    def options_from_values(self, values: Mapping[str, Any], *, key: str = "flag") -> tuple[dict[str, Any], list[str]]:
        """Options from values named by CLI flag (``key="flag"``, ``base``/``checkpoint``...) or node
        parameter (``key="param"``, ``base_path``...); None and "" mean not given. Returns the
        options this backend takes and the names of given values it does not take."""
        public = {(o.cli_flag if key == "flag" else o.param_name): o for o in self.options}
        taken: dict[str, Any] = {}
        ignored: list[str] = []
        for k, v in values.items():
            if v is None or v == "":
                continue
            if k in public:
                taken[public[k].name] = v
            else:
                ignored.append(k)
        return taken, ignored


_REGISTRY: dict[str, BackendSpec] = {}
_loaded = False


def _load_modules() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BACKEND_MODULES:
            importlib.import_module(module)


def register_backend(spec: BackendSpec, *, replace: bool = False) -> BackendSpec:
    """Add ``spec`` to the registry (ConfigError if the name is taken, unless ``replace``)."""
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ConfigError(f"backend {spec.name!r} is already registered", field="backend",
                          fix="pick another name or pass replace=True")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_backend(name: str) -> None:
    """Remove ``name`` (tests, plugins that unload); no error when absent."""
    _REGISTRY.pop(name, None)


def backend_spec(name: str) -> BackendSpec:
    """The spec of ``name``; ConfigError naming the registered backends otherwise."""
    _load_modules()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backend {name!r}", field="backend", fix=f"use one of {list(_REGISTRY)}")
    return _REGISTRY[name]


def backend_specs() -> tuple[BackendSpec, ...]:
    _load_modules()
    return tuple(_REGISTRY.values())


def backend_names() -> tuple[str, ...]:
    """Every registered backend name, in registration order."""
    return tuple(s.name for s in backend_specs())


def baseline_names() -> tuple[str, ...]:
    return tuple(s.name for s in backend_specs() if s.is_baseline)


def make_backend(name: str, **options: Any) -> Any:
    """Build backend ``name`` with ``options`` (ConfigError: unknown name / option, missing option)."""
    return backend_spec(name).load(**options)


def backend_option_names(name: str) -> tuple[str, ...]:
    return backend_spec(name).option_names


# ------------------------------------------------------------------------------------ front ends
def all_options() -> dict[str, list[tuple[BackendSpec, BackendOption]]]:
    """Every option by public CLI flag, with the backends that take it."""
    out: dict[str, list[tuple[BackendSpec, BackendOption]]] = {}
    for spec in backend_specs():
        for opt in spec.options:
            out.setdefault(opt.cli_flag, []).append((spec, opt))
    return out


def add_backend_arguments(parser: Any, *, skip: Iterable[str] = ()) -> None:
    """``--backend`` (choices: the registry, default ``DEFAULT_BACKEND``) and one flag per backend
    option (default None = the backend's own default, listed in the help). ``skip``: flags the
    command defines itself."""
    default = DEFAULT_BACKEND
    specs = backend_specs()
    lines = [f"{s.name}: {s.summary}" for s in specs]
    parser.add_argument("--backend", default=default, choices=[s.name for s in specs],
                        help=f"generation backend (default {default}). " + "; ".join(lines))
    skip = set(skip)
    for flag, users in all_options().items():
        if flag in skip:
            continue
        opt = users[0][1]
        per = ", ".join(f"{s.name}: " + ("required" if o.required else "optional" if o.default is None
                                         else f"default {o.default}") for s, o in users)
        kwargs: dict[str, Any] = {"default": None, "help": f"{opt.help} [{per}]", "dest": flag.replace("-", "_")}
        if opt.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = str if opt.type is Path else opt.type
            if opt.choices:
                kwargs["choices"] = list(opt.choices)
        parser.add_argument(f"--{flag}", **kwargs)


def options_from_args(args: Any, backend: str) -> tuple[dict[str, Any], list[str]]:
    """(options ``backend`` takes, flags given that it does not take) from parsed ``args``."""
    values = {flag: getattr(args, flag.replace("-", "_"), None) for flag in all_options()}
    return backend_spec(backend).options_from_values(values, key="flag")


def node_parameters() -> dict[str, tuple[str, str]]:
    """Node / bring-up parameters of every backend option: param name -> (help, backends)."""
    out: dict[str, tuple[str, str]] = {}
    for spec in backend_specs():
        for opt in spec.options:
            help_, users = out.get(opt.param_name, (opt.help, ""))
            out[opt.param_name] = (help_, f"{users}, {spec.name}" if users else spec.name)
    return out


def options_from_params(backend: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``backend`` from string-valued node parameters ("" = the backend's default)."""
    names = node_parameters()
    taken, _ = backend_spec(backend).options_from_values({k: v for k, v in params.items() if k in names}, key="param")
    return taken
