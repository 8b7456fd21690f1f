"""The production storage of static files: hashed names, compressed copies, module imports rewritten."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class ModuleManifestStaticFilesStorage(CompressedManifestStaticFilesStorage):  # type: ignore[misc]
    """WhiteNoise's compressed manifest storage, also rewriting `import … from "./x.js"` in ES modules.

    The pages' scripts are ES modules that import each other by relative path. With
    hashed names alone, a module loaded as `chat/app.<hash>.js` would still import
    `../site/http.js`, an unhashed name served with a short cache life, and a module
    imported under both names would run twice with separate state. Django's import
    rewriting makes every import name the hashed file.

    The vendored libraries end in `//# sourceMappingURL=…` comments naming maps that
    are not shipped; Django would refuse to collect a file whose reference it cannot
    hash, so the JavaScript source-map pattern is left out (the comments stay as they
    are, and browsers only look the maps up when developer tools are open).
    """

    support_js_module_import_aggregation = True
    patterns = tuple(
        (glob, tuple(p for p in rules if not (glob == "*.js" and "sourceMappingURL" in str(p))))
        for glob, rules in CompressedManifestStaticFilesStorage.patterns
    )
