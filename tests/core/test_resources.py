"""Loaded models are cached per process in an explicit Resources object (no module globals)."""

from kinema4d_core.resources import Resources


def test_a_backend_is_made_once_per_resources_and_released_on_request():
    res = Resources()
    a = res.backend("static-scene")
    assert res.backend("static-scene") is a
    assert Resources().backend("static-scene") is not a          # two Resources share nothing
    res.release_backend("static-scene")
    assert res.backend("static-scene") is not a


def test_at_most_max_backends_are_held_least_recently_used_first():
    res = Resources(max_backends=1)
    res.backend("static-scene")
    res.get("backend", ("other", ()), object)
    assert res.held("backend") == [("other", ())]
    res.robot("panda")
    assert res.robot("panda") is res.robot("panda") and res.held("robot") == ["panda"]


def test_evaluation_keeps_no_module_global_cache():
    import kinema4d_core.evaluation as ev

    assert not hasattr(ev, "_CACHE") and not hasattr(ev, "_cached")
