"""Built-in base policies (kind ``base_policy``): the source of ``a_base``.

Shaped exactly like a third-party plugin: ``plugin.py`` (the hook, no torch),
``config.py`` (pydantic configs) and ``modeling.py`` (the components).
"""
