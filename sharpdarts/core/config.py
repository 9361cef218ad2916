"""The configuration contract: every gin binding takes effect, or the run refuses it.

After a job is built (model, optimizer, schedule, loaders, architect: everything a run
needs before its first epoch), gin's *operative* config holds every parameter that a built
object received from gin. A binding of the parsed config that is not among them did nothing
(its configurable was never called, or the caller always passes that argument) and is
reported by :func:`check_bindings_used`.

gin keeps both configs in module globals without a public accessor
(``gin.config._CONFIG`` and ``gin.config._OPERATIVE_CONFIG``, keyed by ``(scope, selector)``),
so they are read here, in one place. Gin only: no torch.
"""

from __future__ import annotations

from collections.abc import Collection

from gin import config as gin_config

from sharpdarts.errors import UserError

# (scope, selector, parameter): one binding, as gin keys it ('' for no scope).
BindingKey = tuple[str, str, str]


def _macro_selector() -> str:
    return gin_config._REGISTRY.get_match("gin.macro").selector  # noqa: SLF001


def bound_keys() -> set[BindingKey]:
    """Every binding of the parsed config."""
    return {
        (scope, selector, param)
        for (scope, selector), params in gin_config._CONFIG.items()  # noqa: SLF001
        for param in params
    }


def _used_keys() -> set[BindingKey]:
    with gin_config._OPERATIVE_CONFIG_LOCK:  # noqa: SLF001
        return {
            (scope, selector, param)
            for (scope, selector), params in gin_config._OPERATIVE_CONFIG.items()  # noqa: SLF001
            for param in params
        }


def _scope_applies(binding_scope: str, call_scope: str) -> bool:
    """Whether a binding under ``binding_scope`` reaches a call made in ``call_scope``
    (gin applies a scoped binding inside that scope, however deeply nested)."""
    if not binding_scope:
        return True
    wanted = binding_scope.split("/")
    have = call_scope.split("/") if call_scope else []
    it = iter(have)
    return all(part in it for part in wanted)  # an in-order subsequence


def binding_name(key: BindingKey) -> str:
    """A binding as a config writes it: ``SearchNetwork.C``, ``EPOCHS``, ``scope/train.epochs``."""
    scope, selector, param = key
    if selector == _macro_selector():
        return scope  # a macro is gin.macro.value under the macro's name as scope
    short = selector.rsplit(".", 1)[-1]
    return f"{scope + '/' if scope else ''}{short}.{param}"


def unused_bindings(
    exempt: Collection[BindingKey] = (), allowed: Collection[str] = ()
) -> list[str]:
    """The bindings that no built object used, by name (sorted), except ``exempt`` ones and those
    named in ``allowed`` (as :func:`binding_name` writes them, e.g. ``max_w.detach_max``)."""
    used = _used_keys()
    unused = []
    for key in sorted(bound_keys()):
        if key in exempt or binding_name(key) in allowed:
            continue
        scope, selector, param = key
        if not any(
            s == selector and p == param and _scope_applies(scope, call_scope)
            for call_scope, s, p in used
        ):
            unused.append(binding_name(key))
    return sorted(unused)


def check_bindings_used(
    exempt: Collection[BindingKey] = (), *, allowed: Collection[str] = (), what: str = "run"
) -> None:
    """Refuses a config with a binding that nothing used (call after building the job).

    Args:
        exempt: bindings allowed to go unused (e.g. those of gin/smoke.gin that do not apply
            to the experiment at hand).
        allowed: binding names the user explicitly allows to go unused at build time (a
            configurable that a built object calls only while it runs, such as a weighting
            function's own parameters, records its bindings only then).
        what: what is refused, for the message.

    Raises:
        UserError: naming every unused binding.
    """
    unused = unused_bindings(exempt, allowed)
    if unused:
        raise UserError(
            f"The {what} is refused: {len(unused)} binding(s) would take no effect: "
            f"{', '.join(unused)}. Nothing built for this experiment reads them (another "
            "network or job than the one configured, or an argument the code always passes); "
            "remove them, bind the component that is actually used, or name them with "
            "--allow-unused if they are meant to do nothing here."
        )


def keys_of(binding: str) -> set[BindingKey]:
    """The binding keys that a (parsed, hence valid) binding statement such as
    ``scope/SearchNetwork.C = 4`` or ``EPOCHS = 2`` sets, one statement per line."""
    keys = set()
    for line in binding.splitlines():
        target = line.split("#", 1)[0].split("=", 1)[0].strip()
        if "=" not in line or not target:
            continue
        scope, _, name = target.rpartition("/")
        if "." not in name:  # a macro: gin.macro.value under the macro's (scoped) name
            keys.add((target, _macro_selector(), "value"))
            continue
        selector, param = name.rsplit(".", 1)
        match = gin_config._REGISTRY.get_match(selector)  # noqa: SLF001
        if match is not None:
            keys.add((scope, match.selector, param))
    return keys


def selector_of(component) -> str | None:
    """The gin selector of a configurable function or class (None if gin does not know it)."""
    for _, configurable in gin_config._REGISTRY.items():  # noqa: SLF001
        if component is configurable.wrapped or component is configurable.wrapper:
            return configurable.selector
    return None


def bound_values(selector: str) -> dict[tuple[str, str], tuple[object, list[str] | None]]:
    """The parsed bindings of one configurable: ``(scope, parameter) -> (value, macros)``.

    A macro reference (``%EPOCHS``) is followed to its value, ``macros`` naming the macros it
    went through; any other reference (``@fn()``) is known only when called: its ``macros`` is
    None and its value the reference itself.
    """
    macro = _macro_selector()
    found = {}
    for (scope, sel), params in gin_config._CONFIG.items():  # noqa: SLF001
        if sel != selector:
            continue
        for param, value in params.items():
            macros: list[str] | None = []
            while isinstance(value, gin_config.ConfigurableReference) and macros is not None:
                if value.selector != macro or not value.evaluate or len(macros) > 20:
                    macros = None
                    break
                name = "/".join(value.scopes)
                macros.append(name)
                value = gin_config._CONFIG.get((name, macro), {}).get("value")  # noqa: SLF001
            found[(scope, param)] = (value, macros)
    return found
