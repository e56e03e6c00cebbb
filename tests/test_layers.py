"""The two layers: the kernel library (aevb_fast) never imports the training application
(aevb_fast.training), and the application uses the library through its public names only, those
in aevb_fast.__all__. `python tests/test_layers.py` lists the application's imports of the library."""

import ast
import sys
from pathlib import Path

import aevb_fast

PACKAGE = Path(aevb_fast.__file__).parent
APPLICATION = PACKAGE / "training"


def _imports(path: Path):
    """(module, name) for each name a module imports, resolved to absolute module names; name is
    None for `import module`."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            for alias in node.names:
                yield module, alias.name


def _library_files():
    # __main__ is `python -m aevb_fast`: the application's entry point, run, never imported.
    return [p for p in PACKAGE.rglob("*.py") if APPLICATION not in p.parents and p.name != "__main__.py"]


def application_imports_of_the_library() -> dict[str, list[str]]:
    """Per application module, the library names it imports (aevb_fast.X as "X")."""
    found = {}
    for path in sorted(APPLICATION.rglob("*.py")):
        names = []
        for module, name in _imports(path):
            if module == "aevb_fast" and name is not None:
                names.append(name)
            elif module.startswith("aevb_fast") and not module.startswith("aevb_fast.training"):
                names.append(module.removeprefix("aevb_fast.") + (f".{name}" if name else ""))
        found[path.relative_to(PACKAGE.parent).as_posix()] = names
    return found


def test_the_library_never_imports_the_application():
    offenders = [
        f"{p.relative_to(PACKAGE.parent)} imports {module}"
        for p in _library_files()
        for module, _ in _imports(p)
        if module.startswith("aevb_fast.training")
    ]
    assert not offenders, offenders
    assert len(_library_files()) > 10  # the walk found the library


def test_the_application_imports_only_public_names_of_the_library():
    imports = application_imports_of_the_library()
    private = {module: [n for n in names if n not in aevb_fast.__all__] for module, names in imports.items()}
    assert not any(private.values()), private
    assert sum(map(len, imports.values())) > 5  # the walk found the application's imports


if __name__ == "__main__":
    for module, names in application_imports_of_the_library().items():
        print(f"{module}: {', '.join(names) or '-'}")
    sys.exit(0)
